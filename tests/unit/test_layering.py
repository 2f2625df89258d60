"""The architecture stays visible: components meet only over the wire, arrows point down."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Top-level folders of the repository that the package shows as bigfleet.<name>.
LINKED = {p.name for p in (REPO / "bigfleet").iterdir() if p.is_symlink()}


def test_import_contracts_hold_with_no_exceptions() -> None:
    # The contracts live in pyproject.toml; lint-imports builds the real import graph.
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    assert all("ignore_imports" not in c for c in contracts)
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def test_every_link_points_at_its_top_level_folder() -> None:
    assert {"cli", "bench", "controlplane", "shard", "coordinator", "operators"} <= LINKED
    for name in LINKED:
        link = REPO / "bigfleet" / name
        assert link.readlink() == Path("..") / name
        assert (REPO / name / "__init__.py").is_file()


def test_every_linked_folder_is_banned_by_bare_name_and_placed_in_a_layer() -> None:
    banned = PYPROJECT["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    assert set(banned) == LINKED
    (layers,) = (c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    placed = {m.strip() for layer in layers["layers"] for m in layer.replace(":", "|").split("|")}
    assert placed == {f"bigfleet.{name}" for name in LINKED}


def test_the_kernel_contract_names_everything_in_the_kernel() -> None:
    # A new kernel module must be held to "imports no component" from its first commit.
    kernel = {
        f"bigfleet.{p.stem}"
        for p in (REPO / "bigfleet").iterdir()
        if not p.is_symlink()
        and (p.suffix == ".py" or (p / "__init__.py").is_file())
        and p.name != "__init__.py"
    }
    (contract,) = (
        c
        for c in PYPROJECT["tool"]["importlinter"]["contracts"]
        if c["name"].startswith("The kernel")
    )
    assert set(contract["source_modules"]) == kernel


def test_nothing_imports_a_top_level_folder_by_its_bare_name() -> None:
    # From a checkout `import shard` would work and load a second copy of every module.
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        tree = ast.parse((REPO / name).read_text(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            offenders += [f"{name}:{node.lineno} {root}" for root in roots if root in LINKED]
    assert not offenders


def test_control_plane_default_version_matches_the_build_script() -> None:
    from bigfleet.controlplane import KUBE_VERSION

    script = (REPO / "scripts" / "build-control-plane.sh").read_text()
    match = re.search(r"^KUBE_VERSION=\$\{KUBE_VERSION:-([0-9.]+)\}", script, re.MULTILINE)
    assert match is not None
    assert match.group(1) == KUBE_VERSION


def test_no_shard_module_reaches_the_coordinator_even_indirectly() -> None:
    # Static stability: a shard decides and acts with the coordinator down, so nothing
    # it imports may pull coordinator code in, through any chain of imports.
    import grimp

    graph = grimp.build_graph("bigfleet")
    shard_modules = {m for m in graph.modules if m.startswith("bigfleet.shard.")}
    assert {"bigfleet.shard.runtime.service", "bigfleet.shard.engine.cycle"} <= shard_modules
    for module in sorted(shard_modules):
        assert not graph.find_shortest_chain(importer=module, imported="bigfleet.coordinator"), (
            module
        )
