"""The simulator: every shipped scenario meets validation.md's outcomes, deterministically."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bigfleet.cli import main
from bigfleet.sim import runner
from bigfleet.sim.scenario import GOLDEN_DIR, Scenario, catalog, find

SCRIPTED = [name for name in catalog() if find(name).kind == "scripted"]


def test_the_six_scenarios_of_the_catalog_ship() -> None:
    assert sorted(SCRIPTED) == sorted(
        [
            "training-job-topology",
            "capacity-stockout",
            "withdrawal",
            "priority-inversion",
            "provider-configure-failure",
            "drain-failure-withdrawal",
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
    import yaml

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
