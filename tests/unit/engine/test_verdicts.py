"""Per-need verdicts: each reason from a fleet that produces it, and no decision changed."""

from __future__ import annotations

from typing import Any

import pytest

from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.machine import CapacityType
from bigfleet.shard.engine.profile import Spread
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.engine.verdicts import Reason, Row, VerdictBook, VerdictSheet
from bigfleet.sim import runner
from bigfleet.sim.scenario import catalog, find
from tests.unit.engine.builders import GPU, S, gpu, inventory, machine, need, table

NO_RAILS = EngineSettings(rails=RailSettings(reclaim_cap_fraction=0))


def sheet_of(*machines: Any, needs: list[Any], cycles: int = 1) -> VerdictSheet:
    engine = Engine(NO_RAILS)
    inv, demand = inventory(*machines), table(*needs)
    for _ in range(cycles):
        engine.cycle(inv, demand, {n.cluster for n in needs}, now=0.0)
    assert engine.verdicts is not None and engine.verdicts.last is not None
    return engine.verdicts.last


def only(sheet: VerdictSheet, cluster: str = "") -> Row:
    rows = [row for _, row in sheet.rows(cluster)]
    assert len(rows) == 1, rows
    return rows[0]


def test_a_need_covered_by_bound_and_idle_machines_is_satisfied_with_its_counts() -> None:
    sheet = sheet_of(
        machine("m-bound", S.CONFIGURED, cluster="c1"),
        machine("m-idle", S.IDLE),
        machine("m-spec", S.SPECULATIVE, price=1.0),
        needs=[need("c1", 1000, 3)],
    )
    verdict = only(sheet).verdict
    assert verdict.satisfied and verdict.reason is Reason.SATISFIED
    assert (verdict.claimed, verdict.bootstraps, verdict.provisions) == (3, 1, 1)
    assert verdict.deficit == {} and verdict.matching is None and verdict.cycles_unmet == 0


def test_a_shape_no_machine_has_reads_no_matching_supply() -> None:
    sheet = sheet_of(
        machine("m-idle", S.IDLE, alloc={"cpu": 8000}),
        needs=[need("c1", 1000, 1, aggregate=gpu(1), min_unit=gpu(1), instance_type=())],
    )
    verdict = only(sheet).verdict
    assert not verdict.satisfied and verdict.reason is Reason.NO_MATCHING_SUPPLY
    assert verdict.deficit == gpu(1)
    assert verdict.matching is not None and verdict.matching.total == 0


def test_supply_held_by_a_higher_priority_need_starves_the_lower_one() -> None:
    sheet = sheet_of(
        machine("m-1", S.IDLE),
        needs=[need("c1", 1000, 1), need("c2", 500, 1)],
    )
    high, low = (row.verdict for _, row in sheet.rows())
    assert high.reason is Reason.SATISFIED
    assert low.reason is Reason.PRIORITY_STARVED
    assert low.matching is not None and low.matching.idle == 1


def test_a_gang_no_single_rack_can_hold_reads_topology_unsatisfiable() -> None:
    racks = [
        machine(f"m-{rack}-{i}", S.IDLE, labels={"rack": rack})
        for rack in ("r1", "r2")
        for i in range(2)
    ]
    sheet = sheet_of(*racks, needs=[need("c1", 1000, 3, same="rack", group="g")])
    verdict = only(sheet).verdict
    assert verdict.reason is Reason.TOPOLOGY_UNSATISFIABLE
    assert verdict.same_domain in ("r1", "r2") and not verdict.same_satisfiable
    chosen, other = verdict.candidates
    assert chosen.domain == verdict.same_domain and chosen.per_mille == 666
    assert other.per_mille == 666 and not other.satisfiable


def test_too_few_lower_priority_victims_reads_preemption_exhausted() -> None:
    victim = machine("m-low", S.CONFIGURED, cluster="c2", priority=10)
    sheet = sheet_of(victim, needs=[need("c1", 1000, 2)])
    verdict = only(sheet, "c1").verdict
    assert verdict.reason is Reason.PREEMPTION_EXHAUSTED
    assert verdict.preemption is not None and verdict.preemption.victims == 1
    assert verdict.preemption.freed == gpu(1)
    assert verdict.deficit == gpu(1)


def test_enough_victims_reads_preempting_until_they_drain() -> None:
    victim = machine("m-low", S.CONFIGURED, cluster="c2", priority=10)
    sheet = sheet_of(victim, needs=[need("c1", 1000, 1)])
    verdict = only(sheet, "c1").verdict
    assert verdict.reason is Reason.PREEMPTING and not verdict.satisfied
    assert verdict.deficit == gpu(1)


def test_cycles_unmet_counts_consecutive_cycles_also_when_nothing_changes() -> None:
    sheet = sheet_of(needs=[need("c1", 1000, 1)], cycles=4)
    assert sheet.cycle == 4
    assert only(sheet).verdict.cycles_unmet == 4


def test_a_stuck_gang_is_parked_and_says_for_how_long() -> None:
    held = [
        machine(f"m-r{i}", S.CONFIGURED, cluster="c2", priority=5000, labels={"rack": f"r{i}"})
        for i in range(2)
    ]
    sheet = sheet_of(*held, needs=[need("c1", 1000, 2, same="rack", group="g")], cycles=9)
    verdict = only(sheet, "c1").verdict
    assert verdict.parked and verdict.parked_age == 9
    assert verdict.reason is Reason.TOPOLOGY_UNSATISFIABLE


def test_gangs_folded_into_one_plain_need_each_read_the_folds_verdict() -> None:
    big = {GPU: 8000, "cpu": 64000}
    fleet = [machine(f"m-{i}", S.IDLE, alloc=big) for i in range(2)]
    gangs = [
        need("c1", 1000, 0, aggregate={GPU: 2000}, min_unit={GPU: 1000}, same="rack", group=g)
        for g in ("a", "b", "c")
    ]
    fleet = [machine(f"m-{i}", S.IDLE, alloc=big, labels={"rack": "r1"}) for i in range(2)]
    sheet = sheet_of(*fleet, needs=gangs)
    rows = [row for _, row in sheet.rows()]
    assert sorted(row.need.group for row in rows) == ["a", "b", "c"]
    assert all(row.verdict.satisfied for row in rows)
    assert len({id(row.verdict) for row in rows}) == 1  # one fold, one verdict


def test_rows_filter_by_cluster_and_resume_from_a_position() -> None:
    sheet = sheet_of(
        machine("m-1", S.IDLE),
        needs=[need(c, 1000 - i, 1, arrival=i) for i, c in enumerate(["c1", "c2", "c1", "c3"])],
    )
    assert sheet.count() == 4 and sheet.count("c1") == 2 and sheet.count("nope") == 0
    positions = [p for p, _ in sheet.rows("c1")]
    assert positions == [0, 2]
    assert [p for p, _ in sheet.rows("c1", start=1)] == [2]
    assert [row.need.cluster for _, row in sheet.rows()] == ["c1", "c2", "c1", "c3"]


def test_a_configured_machine_of_the_need_counts_whoever_holds_it() -> None:
    sheet = sheet_of(
        machine("m-a", S.CONFIGURED, cluster="c9", priority=2000),
        machine("m-b", S.SPECULATIVE, capacity_type=CapacityType.ON_DEMAND, alloc={"cpu": 1}),
        needs=[need("c1", 1000, 1)],
    )
    verdict = only(sheet, "c1").verdict
    assert verdict.reason is Reason.PRIORITY_STARVED
    assert verdict.matching is not None
    assert (verdict.matching.configured, verdict.matching.speculative) == (1, 0)


def test_machines_changing_state_for_others_are_supply_not_no_supply() -> None:
    sheet = sheet_of(
        machine("m-new", S.CONFIGURING, cluster="c2"),
        machine("m-drain", S.DRAINING, cluster="c3"),
        needs=[need("c1", 1000, 1)],
    )
    verdict = only(sheet, "c1").verdict
    assert verdict.reason is Reason.PRIORITY_STARVED
    assert verdict.matching is not None
    assert (verdict.matching.in_transition, verdict.matching.total) == (2, 2)


def test_matching_supply_is_counted_when_the_cycle_runs_not_when_read() -> None:
    engine = Engine(NO_RAILS)
    inv = inventory(machine("m-a", S.CONFIGURED, cluster="c9", priority=2000))
    engine.cycle(inv, table(need("c1", 1000, 1)), {"c1"}, now=0.0)
    assert engine.verdicts is not None and engine.verdicts.last is not None
    inv.remove("m-a")  # the inventory moves on before anyone reads
    verdict = only(engine.verdicts.last, "c1").verdict
    assert verdict.reason is Reason.PRIORITY_STARVED
    assert verdict.matching is not None and verdict.matching.configured == 1


def test_a_need_with_only_its_own_machines_reads_no_matching_supply() -> None:
    own = [machine(f"m-{i}", S.CONFIGURED, cluster="c1", priority=1000) for i in range(2)]
    sheet = sheet_of(*own, needs=[need("c1", 1000, 3)])
    verdict = only(sheet).verdict
    assert verdict.claimed == 2 and verdict.deficit == gpu(1)
    assert verdict.matching is not None and verdict.matching.configured == 2
    assert verdict.reason is Reason.NO_MATCHING_SUPPLY


def test_strict_spread_stopped_by_its_skew_reads_topology_unsatisfiable() -> None:
    racks = [machine(f"m-r1-{i}", S.IDLE, labels={"rack": "r1"}) for i in range(3)]
    racks.append(machine("m-r2-0", S.IDLE, labels={"rack": "r2"}))
    spread = Spread("rack", 1, "DoNotSchedule")
    sheet = sheet_of(*racks, needs=[need("c1", 1000, 4, spread=spread)])
    verdict = only(sheet).verdict
    assert verdict.claimed == 3 and verdict.deficit == gpu(1)  # r1 twice, r2 once
    assert verdict.reason is Reason.TOPOLOGY_UNSATISFIABLE


def test_a_replayed_need_keeps_its_claimed_count() -> None:
    engine = Engine(NO_RAILS)
    inv = inventory(
        *(machine(f"m-{i}", S.CONFIGURED, cluster="c1") for i in range(2)),
        machine("m-idle", S.IDLE),
    )
    demand = table(need("c1", 1000, 2), need("c2", 500, 1))
    engine.cycle(inv, demand, {"c1", "c2"}, now=0.0)
    demand.replace("c2", [need("c2", 500, 1, arrival=5)])  # only c2 changed: c1 replays
    engine.cycle(inv, demand, {"c1", "c2"}, now=1.0)
    assert engine.phase1_memo.replayed >= 1
    assert engine.verdicts is not None and engine.verdicts.last is not None
    assert only(engine.verdicts.last, "c1").verdict.claimed == 2


def test_verdicts_that_fail_to_record_cost_the_cycle_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    engine = Engine(NO_RAILS)
    inv, demand = inventory(machine("m-idle", S.IDLE)), table(need("c1", 1000, 1))
    monkeypatch.setattr(VerdictBook, "record", broken)
    result = engine.cycle(inv, demand, {"c1"}, now=0.0)
    assert [a.machine_id for a in result.decided] == ["m-idle"]
    assert engine.verdicts is not None
    assert (engine.verdicts.failures, engine.verdicts.last) == (1, None)
    assert str(engine.verdicts.error) == "boom"  # for the shard to log


def test_an_engine_without_verdicts_ranks_no_domains() -> None:
    racks = [machine(f"m-{i}", S.IDLE, labels={"rack": "r1"}) for i in range(2)]
    demand = table(need("c1", 1000, 3, same="rack", group="g"))
    engine = Engine(NO_RAILS, verdicts=False)
    engine.cycle(inventory(*racks), demand, {"c1"}, now=0.0)
    assert engine.phase1_memo.candidates == {}


# Gathering and reading verdicts never changes a decision ---------------------------------------


def _reading_engine(*args: Any, **kwargs: Any) -> Engine:
    """An engine whose every cycle is followed by reading every verdict."""
    engine = Engine(*args, **kwargs)
    decide = engine.cycle

    def cycle(*cycle_args: Any, **cycle_kwargs: Any) -> Any:
        result = decide(*cycle_args, **cycle_kwargs)
        assert engine.verdicts is not None and engine.verdicts.last is not None
        for _ in engine.verdicts.last.rows():
            pass
        return result

    engine.cycle = cycle  # type: ignore[method-assign]
    return engine


def _blind_engine(*args: Any, **kwargs: Any) -> Engine:
    return Engine(*args, verdicts=False, **kwargs)


@pytest.mark.parametrize("name", sorted(catalog()))
def test_verdicts_change_no_decision_of_any_scenario(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every scenario of the catalog (the soak shortened), with and without verdicts."""
    base = find(name)
    if base.soak is not None:
        base = base.model_copy(
            update={"soak": base.soak.model_copy(update={"clusters": 8, "cycles": 120})}
        )
    traces = []
    for factory in (_blind_engine, _reading_engine):
        monkeypatch.setattr("bigfleet.sim.shard_loop.Engine", factory)
        traces.append(runner.run(base, seed=7).trace.text())
    assert traces[0] == traces[1]
