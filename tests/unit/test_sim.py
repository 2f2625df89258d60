"""The simulator: every shipped scenario meets validation.md's outcomes, deterministically."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from bigfleet.cli import main
from bigfleet.shard.engine.machine import CapacityType
from bigfleet.sim import runner
from bigfleet.sim.scenario import GOLDEN_DIR, EngineSpec, Scenario, catalog, find

SCRIPTED = [name for name in catalog() if find(name).kind == "scripted"]


def test_the_six_scenarios_of_the_catalog_ship_and_idle_release() -> None:
    assert sorted(SCRIPTED) == sorted(
        [
            "training-job-topology",
            "capacity-stockout",
            "withdrawal",
            "priority-inversion",
            "provider-configure-failure",
            "drain-failure-withdrawal",
            "idle-release",  # ours: the `engine:` block at work
        ]
    )


@pytest.mark.parametrize("name", SCRIPTED)
def test_scenario_outcome_matches_its_expectations(name: str) -> None:
    result = runner.run(find(name))
    assert result.problems == []


@pytest.mark.parametrize("name", SCRIPTED)
def test_scenario_trace_equals_its_golden_byte_for_byte(name: str) -> None:
    assert runner.run(find(name)).trace.text() == (GOLDEN_DIR / f"{name}.jsonl").read_text()


def test_capacity_stockout_binds_what_exists_then_holds_one_shortfall() -> None:
    result = runner.run(find("capacity-stockout"))
    cycles = [json.loads(line) for line in result.trace.lines if '"kind":"cycle"' in line]
    assert len(cycles[0]["actions"]) == 32
    assert "actions" not in cycles[1]  # the second cycle is quiet: no churn
    (shortfall,) = result.report["shortfalls"]
    assert shortfall["deficit"] == {"nvidia.com/gpu": "256"}


def test_trace_lines_keep_the_schema_key_order() -> None:
    lines = [json.loads(x) for x in runner.run(find("withdrawal")).trace.lines]
    assert [list(x) for x in lines] == [
        ["step", "kind", "state", "notes"],
        ["step", "kind", "cluster", "notes"],
        ["step", "kind", "actions", "state"],
        ["step", "kind", "cluster", "notes"],
        ["step", "kind", "actions", "state"],
        ["step", "kind", "state"],
    ]
    assert [x["step"] for x in lines] == list(range(6))
    assert list(lines[2]["actions"][0]) == ["kind", "machine_id", "cluster"]
    assert list(lines[2]["state"]) == ["total", "by_state", "configured_per_cluster"]


def _soak(idle: int, speculative: int) -> Scenario:
    """8 clusters asking up to 80 machines each against a small fleet."""
    base = find("soak")
    pools = tuple(
        p.model_copy(update={"count": idle if p.state == "idle" else speculative})
        for p in base.pools
    )
    assert base.soak is not None
    soak = base.soak.model_copy(update={"clusters": 8, "max_units": 80, "cycles": 150})
    return base.model_copy(update={"pools": pools, "soak": soak})


def test_soak_invariants_hold_when_demand_exceeds_the_fleet() -> None:
    result = runner.run(_soak(idle=60, speculative=140), seed=7)
    assert result.problems == []
    assert {"Bootstrap", "Provision", "Preempt", "Reclaim"} <= set(result.report["actions_by_kind"])
    assert result.report["final_state"]["total"] == 200


def test_soak_invariants_hold_when_elastic_capacity_comes_and_goes() -> None:
    result = runner.run(_soak(idle=60, speculative=400), seed=7)
    assert result.problems == []
    # Provisioned on-demand machines left idle past their hold go back to quota slots.
    assert {"Provision", "Reclaim", "Delete"} <= set(result.report["actions_by_kind"])
    assert result.report["final_state"]["total"] == 460


def test_the_soak_follows_the_spec_s_defaults_and_fixed_periods() -> None:
    soak = find("soak").soak
    assert soak is not None
    assert (soak.cycles, soak.clusters, soak.replace_every, soak.withdraw_every) == (
        10_000, 30, 5, 35,
    )  # fmt: skip
    assert soak.seed == 0xCAFEBABE == runner.default_seed(find("soak"))
    trace = [
        json.loads(line) for line in runner.run(_soak(60, 140), cycles=70).trace.text().splitlines()
    ]
    rollups = [x for x in trace if x["kind"] == "rollup"]
    # 70 cycles: a replacement every 5th (14), a withdrawal every 35th (2), nothing else.
    assert [r["notes"] for r in rollups].count("needs=1") == 14
    assert [r["notes"] for r in rollups].count("needs=0") == 2


def test_same_seed_gives_an_identical_trace_and_another_seed_does_not() -> None:
    first = runner.run(_soak(60, 140), seed=11, cycles=60).trace.text()
    again = runner.run(_soak(60, 140), seed=11, cycles=60).trace.text()
    other = runner.run(_soak(60, 140), seed=12, cycles=60).trace.text()
    assert first == again
    assert first != other


def test_sim_cli_runs_a_scenario_and_writes_trace_and_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trace, report = tmp_path / "t.jsonl", tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["sim", "run", "priority-inversion", "--trace", str(trace), "--report-json", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert "as expected" in result.output
    assert trace.read_text() == (GOLDEN_DIR / "priority-inversion.jsonl").read_text()
    data = json.loads(report.read_text())
    assert list(data) == [
        "scenario",
        "seed",
        "cycles",
        "final_state",
        "actions_by_kind",
        "shortfalls",
        "cost_per_hour",
        "interruptions",
    ]
    assert data["interruptions"] == 4


def test_sim_cli_exits_non_zero_when_expectations_fail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = find("withdrawal").model_copy(update={"expect": find("training-job-topology").expect})
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken.model_dump(mode="json")))
    result = CliRunner().invoke(main, ["sim", "run", str(path)])
    assert result.exit_code == 1
    assert "by_state: want" in result.output


def test_sim_cli_verify_passes_on_the_goldens() -> None:
    result = CliRunner().invoke(main, ["sim", "verify"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"{len(SCRIPTED)} passed, 0 failed"


def test_per_cycle_counters_add_up_to_the_report() -> None:
    result = runner.run(_soak(idle=60, speculative=140), seed=7, cycles=120)
    counters = result.counters
    assert len(counters) == result.report["cycles"]
    summed: dict[str, int] = {}
    for c in counters:
        assert c.churn == sum(c.actions.values())
        for kind, n in c.actions.items():
            summed[kind] = summed.get(kind, 0) + n
    assert {k: n for k, n in summed.items() if n} == result.report["actions_by_kind"]
    assert counters[-1].configured == result.report["final_state"]["by_state"]["Configured"]
    assert counters[-1].shortfalls == len(result.report["shortfalls"])
    assert counters[-1].churn == 0  # the quiet period ends quiescent


def test_per_cycle_counters_follow_demand_configured_and_shortfalls() -> None:
    stockout = runner.run(find("capacity-stockout")).counters
    # 512 GPUs in 8-GPU units: 64 machines wanted, 32 exist; all bound in the first cycle.
    assert [(c.demand, c.configured, c.shortfalls, c.churn) for c in stockout] == [
        (64, 32, 1, 32),
        (64, 32, 1, 0),
    ]
    assert stockout[0].actions["Bootstrap"] == 32
    withdrawal = runner.run(find("withdrawal")).counters
    assert [(c.demand, c.configured, c.actions["Reclaim"]) for c in withdrawal] == [
        (32, 32, 0),
        (0, 0, 32),
    ]


def test_demand_is_unknown_when_a_need_has_no_min_unit() -> None:
    from bigfleet.sim.scenario import NeedSpec

    assert runner.need_machines(NeedSpec(aggregate={"nvidia.com/gpu": "8"})) is None
    sized = NeedSpec(
        aggregate={"nvidia.com/gpu": "20", "cpu": "10"},
        min_unit={"nvidia.com/gpu": "8", "cpu": "1"},
    )
    assert runner.need_machines(sized) == 10  # the larger count over the unit's resources


def _deletes(result: runner.RunResult) -> list[int]:
    """The trace steps of the cycles that released machines."""
    lines = [json.loads(line) for line in result.trace.lines]
    return [x["step"] for x in lines if any(a["kind"] == "Delete" for a in x.get("actions", ()))]


def test_the_engine_block_s_idle_hold_decides_when_machines_are_released() -> None:
    scenario = find("idle-release")
    assert dict(scenario.engine.settings().idle_hold_s) == {
        CapacityType.ON_DEMAND: 30.0,
        CapacityType.SPOT: 60.0,
    }
    short = runner.run(scenario)
    assert short.problems == []
    assert _deletes(short) == [7]  # 30 s after the reclaim drained them
    longer = scenario.model_copy(update={"engine": EngineSpec(idle_hold_seconds={"on-demand": 50})})
    assert _deletes(runner.run(longer)) == [9]
    default = runner.run(scenario.model_copy(update={"engine": EngineSpec()}))
    assert _deletes(default) == []  # 10 min: past the end of the run
    assert default.report["final_state"]["by_state"] == {"Idle": 4}


def test_the_engine_block_sets_every_engine_setting() -> None:
    block = {
        "idle_hold_seconds": {"spot": None, "reserved": 7200},
        "victim_weights": {"priority": 2, "reclamation": 0},
        "drain_estimate_seconds": 5,
        "reclaim_grace_seconds": 45,
        "same_park_after_cycles": 3,
        "same_reprobe_every_cycles": 9,
        "rails": {"reclaim_cap_fraction": 0.5, "max_actions_per_cycle": 4},
    }
    settings = EngineSpec.model_validate(block).settings()
    assert dict(settings.idle_hold_s) == {
        CapacityType.ON_DEMAND: 600.0,
        CapacityType.RESERVED: 7200.0,
    }
    assert (settings.victim_weights.priority, settings.victim_weights.drain) == (2, 0.1)
    assert settings.victim_weights.reclamation == 0
    assert (settings.drain_estimate_s, settings.reclaim_grace_s) == (5, 45)
    assert (settings.same_park_after_cycles, settings.same_reprobe_every_cycles) == (3, 9)
    assert (settings.rails.reclaim_cap_fraction, settings.rails.max_actions_per_cycle) == (0.5, 4)
    # Without a block the simulator runs the engine's defaults with the rails off.
    assert EngineSpec().settings().rails.reclaim_cap_fraction == 0
    assert EngineSpec().settings().idle_hold_s == find("withdrawal").engine.settings().idle_hold_s


@pytest.mark.parametrize(
    ("block", "names"),
    [
        ({"idle_hold": {"spot": 1}}, "engine.idle_hold"),
        ({"idle_hold_seconds": {"gpu": 1}}, "engine.idle_hold_seconds.gpu"),
        ({"idle_hold_seconds": {"spot": -1}}, "engine.idle_hold_seconds.spot"),
        ({"victim_weights": {"speed": 1}}, "engine.victim_weights.speed"),
        ({"victim_weights": {"drain": -1}}, "engine.victim_weights.drain"),
        ({"same_reprobe_every_cycles": 0}, "engine.same_reprobe_every_cycles"),
        ({"reclaim_grace_seconds": -1}, "engine.reclaim_grace_seconds"),
        ({"rails": {"pause_reclaims": True}}, "engine.rails.pause_reclaims"),
    ],
)
def test_an_engine_block_with_an_unknown_key_or_bad_value_is_refused_naming_it(
    block: dict[str, object], names: str
) -> None:
    text = yaml.safe_dump({"name": "bad", "engine": block})
    with pytest.raises(ValidationError) as refused:
        Scenario.model_validate(yaml.safe_load(text))
    assert names in str(refused.value)
