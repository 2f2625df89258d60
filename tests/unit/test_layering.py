"""The architecture stays visible: components meet only over the wire."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    # The contracts live in pyproject.toml: components independent of each other,
    # the kernel importing no component. lint-imports builds the real import graph.
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


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

    graph = grimp.build_graph("shard", "coordinator", "bigfleet")
    shard_modules = {m for m in graph.modules if m.split(".")[0] == "shard"}
    assert "shard.runtime.service" in shard_modules and "shard.engine.cycle" in shard_modules
    for module in sorted(shard_modules):
        assert not graph.find_shortest_chain(importer=module, imported="coordinator"), module
