"""What a user installs: one import package, `bigfleet`, and a working command.

The repository keeps its components in top-level folders and shows them inside
`bigfleet/` through links (ADR 0016); this test builds the real wheel and
installs it into a fresh virtual environment to prove the links were resolved
into files and nothing generic lands at the top of site-packages.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERIC = ("shard", "coordinator", "operators", "providers_fake", "sim", "conformance", "cli")


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the built wheel; its dependencies come from this venv."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", root / "dist", REPO],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("bigfleet-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True, capture_output=True,
    )  # fmt: skip
    # The dependencies are this venv's packages: a plain path line adds the directory
    # without running its .pth files, so the checkout's editable hook stays out.
    deps = _site_packages(Path(sys.executable))
    (_site_packages(python) / "deps.pth").write_text(f"{deps}\n")
    return env_dir


def test_only_bigfleet_lands_at_the_top_of_site_packages(installed: Path) -> None:
    top = {
        p.name
        for p in _site_packages(installed / "bin" / "python").iterdir()
        if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"
    }
    # pip and its friends come with every venv; bigfleet brings exactly one name.
    assert "bigfleet" in top
    assert not top & set(GENERIC)
    links = [p for p in (_site_packages(installed / "bin" / "python") / "bigfleet").rglob("*")]
    assert not [p for p in links if p.is_symlink()]


def test_the_installed_package_imports_every_component_and_nothing_generic(
    installed: Path, tmp_path: Path
) -> None:
    script = (
        "import importlib, importlib.util, sys\n"
        "for name in ('bigfleet.cli', 'bigfleet.shard.runtime.service', 'bigfleet.coordinator.app',"
        " 'bigfleet.operators.operator.app', 'bigfleet.providers_fake.server',"
        " 'bigfleet.conformance.checks', 'bigfleet.sim.runner', 'bigfleet.bench.engine',"
        " 'bigfleet.controlplane'):\n"
        "    importlib.import_module(name)\n"
        f"generic = [n for n in {GENERIC!r} if importlib.util.find_spec(n)]\n"
        "assert not generic, generic\n"
        "import bigfleet.crd\n"
        "assert any(bigfleet.crd.crd_dir().glob('*.yaml')), 'CRDs not shipped'\n"
        "import bigfleet.sim.scenario as s\n"
        "assert any(s.SCENARIO_DIR.glob('*.yaml')), 'scenarios not shipped'\n"
    )
    # Isolated mode and a foreign working directory: nothing of the checkout on the path.
    subprocess.run(
        [installed / "bin" / "python", "-I", "-c", script], cwd=tmp_path, check=True, timeout=120
    )


def test_the_installed_command_answers_help(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [installed / "bin" / "bigfleet", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for command in ("shard", "coordinator", "operator", "all-in-one", "bench", "sim"):
        assert f"  {command}" in result.stdout


def test_the_wheel_carries_the_compiled_engine_beside_its_source(
    installed: Path, tmp_path: Path
) -> None:
    """ADR 0023: the wheel build compiles the engine's hot modules into the package."""
    from bigfleet.shard import engine

    if engine.BUILD != "compiled":
        pytest.skip("this checkout's engine did not compile (no C compiler): nor did the wheel's")
    probe = (
        "import bigfleet.shard.engine as e, bigfleet.shard.engine.decision.phase1 as p;"
        "print(e.BUILD, p.__file__)"
    )
    result = subprocess.run(
        [installed / "bin" / "python", "-I", "-c", probe],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"BIGFLEET_ENGINE": "compiled", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    build, path = result.stdout.split()
    assert build == "compiled"
    assert path.endswith(".so")
    assert (Path(path).parent / "phase1.py").exists()  # the source ships too: the reference
