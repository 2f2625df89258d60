"""`bigfleet shard`'s engine flags: parsed into EngineSettings that reach the shard's engine,
refused naming the flag, shown in --help with their defaults."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bigfleet.cli import main
from bigfleet.shard import app
from bigfleet.shard.engine.machine import CapacityType
from bigfleet.shard.engine.settings import EngineSettings, VictimWeights
from bigfleet.shard.runtime.service import ShardService

OD, SPOT, RESERVED = CapacityType.ON_DEMAND, CapacityType.SPOT, CapacityType.RESERVED
# The module (the package's `shard` attribute is the command).
shard_cli = importlib.import_module("bigfleet.cli.shard")


def _invoke(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *flags: str
) -> tuple[Result, list[app.ShardSettings]]:
    """Run the command up to where it would serve; the ShardSettings it would serve with."""
    built: list[app.ShardSettings] = []

    def serve(main: object, timeout: float) -> None:
        built.append(main(None))  # type: ignore[operator]

    monkeypatch.setattr(shard_cli, "until_signalled", serve)
    monkeypatch.setattr(app, "run", lambda settings, stop: settings)
    args = ["shard", "--id", "shard-0", "--provider", "fake=127.0.0.1:1"]
    args += ["--data-dir", str(tmp_path), "--metrics-port", "0", *flags]
    return CliRunner().invoke(main, args), built


async def test_the_shard_built_from_its_flags_holds_the_engine_settings_passed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, built = _invoke(
        monkeypatch,
        tmp_path,
        "--idle-hold",
        "on-demand=90s,reserved=2h",
        "--idle-hold",  # the last one counts, as for any flag
        "on-demand=5m,spot=never",
        "--victim-weights",
        "priority=2,reclamation=0",
        "--drain-estimate",
        "12.5",
        "--reclaim-grace",
        "45",
        "--same-park-after",
        "3",
        "--same-reprobe-every",
        "7",
        "--reclaim-cap-fraction",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    (settings,) = built
    service = ShardService(settings)
    engine = service.engine.settings
    assert dict(engine.idle_hold_s) == {OD: 300.0}
    assert engine.victim_weights == VictimWeights(priority=2, reclamation=0)
    assert (engine.drain_estimate_s, engine.reclaim_grace_s) == (12.5, 45)
    assert (engine.same_park_after_cycles, engine.same_reprobe_every_cycles) == (3, 7)
    assert engine.rails.reclaim_cap_fraction == 0.2


def test_without_the_flags_the_engine_has_its_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, built = _invoke(monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    assert built[0].engine == EngineSettings()


def test_a_hold_for_one_type_keeps_the_others_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, built = _invoke(monkeypatch, tmp_path, "--idle-hold", "reserved=1h, on-demand=0")
    assert dict(built[0].engine.idle_hold_s) == {OD: 0.0, SPOT: 60.0, RESERVED: 3600.0}


@pytest.mark.parametrize(
    ("flags", "flag", "says"),
    [
        (["--idle-hold", "spot=-5s"], "--idle-hold", "at least 0"),
        (["--idle-hold", "gpu=1m"], "--idle-hold", "no capacity type 'gpu'"),
        (["--idle-hold", "spot"], "--idle-hold", "not NAME=VALUE"),
        (["--idle-hold", "spot=soon"], "--idle-hold", "not a duration"),
        (["--idle-hold", "spot=inf"], "--idle-hold", "finite"),
        (["--victim-weights", "priority=x"], "--victim-weights", "not a number"),
        (["--victim-weights", "speed=1"], "--victim-weights", "no weight 'speed'"),
        (["--victim-weights", "drain=-1"], "--victim-weights", "drain: must be"),
        (["--victim-weights", "drain=nan"], "--victim-weights", "finite"),
        (["--drain-estimate", "-1"], "--drain-estimate", ""),
        (["--reclaim-grace", "-1"], "--reclaim-grace", ""),
        (["--same-park-after", "0"], "--same-park-after", ""),
        (["--same-reprobe-every", "0"], "--same-reprobe-every", ""),
    ],
)
def test_a_bad_value_is_refused_naming_the_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: list[str], flag: str, says: str
) -> None:
    result, built = _invoke(monkeypatch, tmp_path, *flags)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output
    assert says in result.output
    assert built == []


def test_help_shows_every_engine_flag_with_its_default() -> None:
    wide = {"terminal_width": 400, "max_content_width": 400}  # no wrapping inside a default
    text = CliRunner().invoke(main, ["shard", "--help"], **wide).output
    for shown in (
        "--idle-hold TYPE=DURATION[,...]",
        "[default: on-demand=10m,spot=1m]",
        "--victim-weights NAME=WEIGHT[,...]",
        "[default: priority=1,drain=0.1,interruption=0.1,reclamation=0.1]",
        "--drain-estimate FLOAT RANGE",
        "[default: 30.0; x>=0]",
        "--reclaim-grace INTEGER RANGE",
        "[default: 600; x>=0]",
        "--same-park-after INTEGER RANGE",
        "[default: 8; x>=1]",
        "--same-reprobe-every INTEGER RANGE",
        "[default: 32; x>=1]",
    ):
        assert shown in text, shown
