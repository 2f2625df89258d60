"""The compiled engine (ADR 0023): chosen only when current, and deciding as the Python one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bigfleet.shard import engine
from bigfleet.shard.engine import build
from bigfleet.shard.engine.decision import phase1

ENGINE = "bigfleet.shard.engine"


def _engine_in_subprocess(choice: str) -> subprocess.CompletedProcess[str]:
    probe = (
        "import bigfleet.shard.engine as e, bigfleet.shard.engine.decision.phase1 as p;"
        "print(e.BUILD, p.__file__)"
    )
    env = {**os.environ, "BIGFLEET_ENGINE": choice}
    return subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )


def test_this_process_runs_the_engine_it_was_asked_for() -> None:
    wanted = os.environ.get("BIGFLEET_ENGINE", "auto")
    if wanted == "python":
        assert engine.BUILD == "python"
        assert phase1.__file__ is not None and phase1.__file__.endswith(".py")
    elif wanted == "compiled":
        assert engine.BUILD == "compiled"
        assert phase1.__file__ is not None and phase1.__file__.endswith(".so")
    else:
        pytest.skip("BIGFLEET_ENGINE is auto here: either engine is right")


def test_python_is_taken_from_the_source_even_when_compiled_modules_are_there() -> None:
    ran = _engine_in_subprocess("python")
    assert ran.returncode == 0, ran.stderr
    build_name, path = ran.stdout.split()
    assert build_name == "python"
    assert path.endswith("phase1.py")


def test_an_unknown_choice_is_refused_naming_the_variable() -> None:
    ran = _engine_in_subprocess("fast")
    assert ran.returncode != 0
    assert "BIGFLEET_ENGINE='fast'" in ran.stderr
    assert "auto, python, compiled" in ran.stderr


def _select_with(
    manifest: Path, wanted: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[object]]:
    monkeypatch.setattr(build, "MANIFEST", manifest)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the finder goes away after
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = build.select(wanted)
    return chosen, [w.message for w in caught]


def test_a_source_edited_after_compiling_runs_as_python_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "compiled.json"
    manifest.write_text(json.dumps({"modules": {f"{ENGINE}.decision.phase1": "0" * 64}}))
    chosen, warned = _select_with(manifest, "auto", monkeypatch)
    assert chosen == "python"
    assert any(f"{ENGINE}.decision.phase1" in str(w) for w in warned)
    finder = sys.meta_path[0]
    spec = finder.find_spec(f"{ENGINE}.decision.phase1", None)
    assert spec is not None and spec.origin is not None and spec.origin.endswith("phase1.py")
    with pytest.raises(build.EngineBuildError, match="older than their sources"):
        _select_with(manifest, "compiled", monkeypatch)


def test_no_build_is_python_and_compiled_then_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen, warned = _select_with(tmp_path / "absent.json", "auto", monkeypatch)
    assert (chosen, warned) == ("python", [])  # a machine without a compiler: no noise
    with pytest.raises(build.EngineBuildError, match="not compiled at install"):
        _select_with(tmp_path / "absent.json", "compiled", monkeypatch)


def _trace(choice: str, scenario: str, seed: int, cycles: int, out: Path) -> str:
    env = {**os.environ, "BIGFLEET_ENGINE": choice}
    ran = subprocess.run(
        [
            *(sys.executable, "-m", "bigfleet.cli", "sim", "run", scenario),
            *("--seed", str(seed), "--cycles", str(cycles), "--trace", str(out)),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode in (0, 1), ran.stderr  # 1: expectations failed, still a trace
    return out.read_text()


@pytest.mark.parametrize(
    ("scenario", "seed", "cycles"),
    [("soak", 0x5EED, 400), ("soak", 20261207, 400), ("cl-full-cardinality", 7, 12)],
)
def test_the_compiled_engine_decides_as_the_python_one(
    scenario: str, seed: int, cycles: int, tmp_path: Path
) -> None:
    """Random demand and churn (the soak's draws), every action compared byte for byte."""
    if engine.BUILD != "compiled":
        pytest.skip("compared where the engine runs compiled (scripts/test.sh's second pass)")
    python = _trace("python", scenario, seed, cycles, tmp_path / "python.jsonl")
    compiled = _trace("compiled", scenario, seed, cycles, tmp_path / "compiled.jsonl")
    assert python.count("\n") > cycles  # a trace with its cycles in it, not an empty file
    assert compiled == python
