"""engine.md §7: every worked example E1-E14 as a test, named after its behaviour."""

from __future__ import annotations

import math

import pytest

from bigfleet import penalty
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision import cost, phase1, phase2, phase3
from bigfleet.shard.engine.machine import CapacityType
from bigfleet.shard.engine.normalize import normalize
from bigfleet.shard.engine.profile import Operator
from bigfleet.shard.engine.rails import RollupQuarantine
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.engine.shortfall import ShortfallLedger
from tests.unit.engine.builders import (
    S,
    gpu,
    inventory,
    kinds,
    machine,
    need,
    table,
)

OD, SPOT, BM = CapacityType.ON_DEMAND, CapacityType.SPOT, CapacityType.BARE_METAL
NO_RAILS = EngineSettings(rails=RailSettings(reclaim_cap_fraction=0))


# E1 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dollars", "ordinal", "bound"),
    [
        (-3, 1, 0),
        (0, 1, 0),
        (0.25, 2, 0.5),
        (0.50, 2, 0.5),
        (0.51, 3, 1),
        (1.00, 3, 1),
        (1.01, 4, 2),
        (3, 5, 4),
        (33, 9, 64),
        (8000, 16, 8192),
        (1_048_576, 23, 1_048_576),
        (8_388_608, 26, 8_388_608),
        (8_388_609, 27, math.inf),
        (20_000_000, 27, math.inf),
    ],
)
def test_e1_penalties_round_up_to_power_of_two_buckets(
    dollars: float, ordinal: int, bound: float
) -> None:
    assert penalty.bucket_for_dollars(dollars) == ordinal
    assert penalty.upper_bound(ordinal) == bound


# E2 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "spot_cost", "expected"),
    [(3, 2.20, "s-spot"), (30, 5.00, "s-spot"), (33, 8.20, "s-od"), (8000, 821.00, "s-od")],
)
def test_e2_speculative_choice_follows_effective_cost(
    raw: float, spot_cost: float, expected: str
) -> None:
    bucket = penalty.bucket_for_dollars(raw)
    spot = machine("s-spot", S.SPECULATIVE, price=1.80, p=0.10, capacity_type=SPOT)
    od = machine("s-od", S.SPECULATIVE, price=6.00, capacity_type=OD)
    assert cost.effective_cost(spot, bucket) == pytest.approx(spot_cost)
    assert cost.effective_cost(od, bucket) == 6.00
    result = phase1.run(inventory(spot, od), [need("c1", 1000, 1, interruption=bucket)])
    assert kinds(result.actions) == [("Provision", expected)]


def test_pinned_penalty_prices_any_interruption_risk_as_infinite() -> None:
    spot = machine("s-spot", S.SPECULATIVE, price=0.10, p=0.01)
    safe = machine("s-safe", S.SPECULATIVE, price=9.0, p=0.0)
    assert cost.effective_cost(spot, penalty.PINNED) == math.inf
    assert cost.effective_cost(safe, penalty.PINNED) == 9.0


# E3 ------------------------------------------------------------------------------------------
def test_e3_idle_beats_cheaper_speculative() -> None:
    inv = inventory(
        machine("i-1", S.IDLE, price=6.0, capacity_type=OD),
        machine("s-1", S.SPECULATIVE, price=1.0, p=0.05, capacity_type=SPOT),
    )
    result = phase1.run(inv, [need("c1", 1_000_000, 1)])
    assert kinds(result.actions) == [("Bootstrap", "i-1")]
    assert result.actions[0].cluster == "c1"
    assert result.actions[0].reason == "phase1.idle"
    assert result.unsatisfied == []


# E4 ------------------------------------------------------------------------------------------
def test_e4_idle_first_then_speculative_by_effective_cost() -> None:
    b8 = penalty.bucket_for_dollars(8)
    inv = inventory(
        machine("i-1", S.IDLE, price=6.0),
        machine("s-a", S.SPECULATIVE, price=2.0, p=0.05),
        machine("s-b", S.SPECULATIVE, price=3.0, p=0.0),
        machine("s-c", S.SPECULATIVE, price=1.0, p=0.50),
    )
    result = phase1.run(inv, [need("c1", 1000, 3, interruption=b8)])
    assert kinds(result.actions) == [
        ("Bootstrap", "i-1"),
        ("Provision", "s-a"),
        ("Provision", "s-b"),
    ]
    assert result.unsatisfied == []


# E5 ------------------------------------------------------------------------------------------
C6A = "c6a.4xlarge"
GI = 2**30 * 1000  # one Gi in milli-units


def test_e5a_one_dense_machine_absorbs_many_pods_and_leaves_a_vector_deficit() -> None:
    dense = machine(
        "dense-1",
        S.CONFIGURED,
        cluster="c1",
        instance_type=C6A,
        alloc={"cpu": 16_000, "memory": 32 * GI},
    )
    n = need(
        "c1",
        100,
        0,
        instance_type=C6A,
        aggregate={"cpu": 10_000, "memory": 40 * GI},
        min_unit={"cpu": 1000, "memory": 4 * GI},
    )
    result = phase1.run(inventory(dense), [n])
    assert result.actions == []
    (u,) = result.unsatisfied
    assert u.deficit == {"cpu": 0, "memory": 8 * GI}


def test_e5b_machine_count_covers_every_dimension() -> None:
    idle = [
        machine(f"m-{i}", S.IDLE, instance_type=C6A, alloc={"cpu": 16_000, "memory": 32 * GI})
        for i in range(6)
    ]
    n = need(
        "c1",
        100,
        0,
        instance_type=C6A,
        aggregate={"cpu": 40_000, "memory": 100 * GI},
        min_unit={"cpu": 1000, "memory": 4 * GI},
    )
    result = phase1.run(inventory(*idle), [n])
    assert kinds(result.actions) == [("Bootstrap", f"m-{i}") for i in range(4)]
    assert result.unsatisfied == []


# E6 ------------------------------------------------------------------------------------------
def _batch_machines(state_for: dict[str, S] | None = None) -> list:  # type: ignore[type-arg]
    state_for = state_for or {}
    out = []
    for i in range(4):
        mid = f"b-{i}"
        state = state_for.get(mid, S.CONFIGURED)
        if state == S.CONFIGURED:
            out.append(
                machine(
                    mid,
                    state,
                    cluster="batch",
                    price=6.0,
                    capacity_type=OD,
                    priority=400_000,
                    interruption=8,
                    reclamation=1,
                )
            )
        else:
            out.append(machine(mid, state, price=6.0, capacity_type=OD))
    return out


def test_e6_priority_inversion_preempts_then_rebinds_next_cycle() -> None:
    demand = table(need("batch", 400_000, 4), need("train", 1_000_000, 2))
    engine = Engine(NO_RAILS)
    first = engine.cycle(inventory(*_batch_machines()), demand, {"batch", "train"}, now=0)
    assert kinds(first.decided) == [("Preempt", "b-0"), ("Preempt", "b-1")]
    for action in first.decided:
        assert (action.cluster, action.grace_seconds, action.preemptor_priority) == (
            "batch",
            30,
            1_000_000,
        )
    assert len(engine.shortfalls) == 0

    victim = machine(
        "b-0", S.CONFIGURED, cluster="batch", priority=400_000, interruption=8, reclamation=1
    )
    assert cost.victim_score(1_000_000, victim) == pytest.approx(600_000.1158333, abs=1e-6)

    drained = inventory(*_batch_machines({"b-0": S.IDLE, "b-1": S.IDLE}))
    second = engine.cycle(drained, demand, {"batch", "train"}, now=1)
    assert kinds(second.decided) == [("Bootstrap", "b-0"), ("Bootstrap", "b-1")]
    assert {a.cluster for a in second.decided} == {"train"}
    (entry,) = engine.shortfalls.report()
    assert entry.profile.priority == 400_000
    assert entry.deficit == gpu(2)
    assert entry.age_cycles == 1


# E7 ------------------------------------------------------------------------------------------
def test_e7a_victim_with_lower_penalties_goes_first_with_two_minute_grace() -> None:
    cheap = machine(
        "v-cheap", S.CONFIGURED, cluster="x", priority=500_000, interruption=1, reclamation=1
    )
    dear = machine(
        "v-exp", S.CONFIGURED, cluster="x", priority=500_000, interruption=131_072, reclamation=1
    )
    assert cost.victim_score(1_000_000, cheap) == pytest.approx(500_000.2033333, abs=1e-6)
    assert cost.victim_score(1_000_000, dear) == pytest.approx(500_000.1033341, abs=1e-6)
    first = phase1.run(inventory(cheap, dear), [need("y", 1_000_000, 1)])
    result = phase2.run(inventory(cheap, dear), first.unsatisfied)
    assert kinds(result.actions) == [("Preempt", "v-cheap")]
    assert result.actions[0].grace_seconds == 120
    assert result.unresolved == []


def test_e7b_score_floors_keep_terms_finite() -> None:
    victim = machine("v", S.CONFIGURED, cluster="x", priority=0)
    assert cost.victim_score(1000, victim, drain_seconds=0) == pytest.approx(1020.1)


@pytest.mark.parametrize(
    ("victim", "grace"),
    [
        (0, 10),
        (99_999, 10),
        (100_000, 30),
        (499_999, 30),
        (500_000, 120),
        (899_999, 120),
        (900_000, 600),
        (1_000_000, 600),
    ],
)
def test_e7c_drain_grace_by_priority_gap(victim: int, grace: int) -> None:
    assert cost.drain_grace_seconds(1_000_000, victim) == grace


def test_e7d_equal_priority_is_never_a_victim() -> None:
    peer = machine("v", S.CONFIGURED, cluster="x", priority=1_000_000)
    first = phase1.run(inventory(peer), [need("y", 1_000_000, 1)])
    result = phase2.run(inventory(peer), first.unsatisfied)
    assert result.actions == []
    (u,) = result.unresolved
    assert u.deficit == gpu(1)


# E8 ------------------------------------------------------------------------------------------
def _e8_inventory():  # type: ignore[no-untyped-def]
    return inventory(
        *(
            machine(f"i-0{i}", S.CONFIGURED, cluster="c1", price=6.0, capacity_type=OD)
            for i in range(3)
        ),
        *(
            machine(f"i-0{i}", S.CONFIGURED, cluster="c1", price=0.0, capacity_type=BM)
            for i in (3, 4)
        ),
    )


def test_e8_reclaim_releases_the_expensive_unclaimed_tail() -> None:
    inv = _e8_inventory()
    first = phase1.run(inv, [need("c1", 100, 3)])
    assert set(first.claimed) == {"i-03", "i-04", "i-00"}
    actions = phase3.reclaims(inv, first.claimed.keys(), {"c1"})
    assert kinds(actions) == [("Reclaim", "i-01"), ("Reclaim", "i-02")]
    assert {a.grace_seconds for a in actions} == {600}


def test_e8_blast_radius_cap_keeps_one_reclaim_of_five() -> None:
    inv = _e8_inventory()
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0.05)))
    result = engine.cycle(inv, table(need("c1", 100, 3)), {"c1"}, now=0)
    assert kinds(result.rails.execute) == [("Reclaim", "i-01")]
    assert result.rails.capped == 1


@pytest.mark.parametrize(("configured", "cap"), [(5, 1), (39, 1), (40, 2), (100, 5)])
def test_e8_cap_table(configured: int, cap: int) -> None:
    assert cost.reclaim_cap(0.05, configured) == cap


def test_e8_keep_order_breaks_price_ties_by_keeping_the_higher_reclamation_penalty() -> None:
    inv = inventory(
        machine("v-low", S.CONFIGURED, cluster="c1", price=6.0, reclamation=0),
        machine("v-high", S.CONFIGURED, cluster="c1", price=6.0, reclamation=5000),
    )
    first = phase1.run(inv, [need("c1", 100, 1)])
    assert kinds(phase3.reclaims(inv, first.claimed.keys(), {"c1"})) == [("Reclaim", "v-low")]


def test_e8_no_reclaim_before_the_clusters_first_rollup() -> None:
    inv = _e8_inventory()
    first = phase1.run(inv, [need("c1", 100, 3)])
    assert phase3.reclaims(inv, first.claimed.keys(), reported=set()) == []


# E9 ------------------------------------------------------------------------------------------
def _racks(**sizes: int):  # type: ignore[no-untyped-def]
    return [
        machine(f"{rack}-{i}", S.IDLE, labels={"rack": rack})
        for rack, n in sizes.items()
        for i in range(n)
    ]


def test_e9_same_gang_lands_in_the_one_rack_that_fits_it() -> None:
    inv = inventory(*_racks(r1=4, r2=2))
    demand = [need("c1", 1000, 3, same="rack", group="g")]
    assert normalize(inv, demand) == demand  # no machine hosts 24 GPUs: not folded
    result = phase1.run(inv, demand)
    assert kinds(result.actions) == [("Bootstrap", f"r1-{i}") for i in range(3)]
    assert result.unsatisfied == []


# E10 -----------------------------------------------------------------------------------------
def test_e10_gang_that_does_not_fit_shortfalls_in_one_rack_then_parks() -> None:
    n = need("c1", 1000, 5, same="rack", group="g")
    engine = Engine(NO_RAILS)
    first = engine.cycle(inventory(*_racks(r1=3, r2=3)), table(n), {"c1"}, now=0)
    assert kinds(first.decided) == [("Bootstrap", f"r1-{i}") for i in range(3)]
    (u,) = first.phase2.unresolved
    assert (u.deficit, u.same_domain, u.acquired) == (gpu(2), "r1", 3)
    assert engine.shortfalls.report()[0].age_cycles == 1

    # r1's machines are now Configured for the gang; r2's three stay Idle.
    later = inventory(
        *(
            machine(
                f"r1-{i}",
                S.CONFIGURED,
                cluster="c1",
                labels={"rack": "r1"},
                priority=1000,
                group="g",
                fingerprint=n.fingerprint,
            )
            for i in range(3)
        ),
        *(machine(f"r2-{i}", S.IDLE, labels={"rack": "r1".replace("1", "2")}) for i in range(3)),
    )
    ages = []
    for cycle in range(2, 12):
        result = engine.cycle(later, table(n), {"c1"}, now=cycle)
        (u,) = result.phase2.unresolved
        assert u.same_domain == "r1"  # rule 5: stay where the assembly is
        assert result.decided == []  # nothing acquired, nothing preempted, r1 never reclaimed
        ages.append(engine.parking.age(n))
    assert ages == list(range(1, 11))
    assert engine.shortfalls.report()[0].escalates
    stamped = engine.parking.stamp([n])
    assert stamped[0].parked  # age 10 >= 8 and not a multiple of 32


# E11 -----------------------------------------------------------------------------------------
def test_e11_sub_machine_same_gangs_fold_into_one_plain_need() -> None:
    host = machine(
        "m",
        S.IDLE,
        instance_type="c6a.4xlarge",
        alloc={"cpu": 16_000, "memory": 32 * GI},
        labels={"rack": "r1"},
    )
    small = {"cpu": 4000, "memory": 8 * GI}
    unit = {"cpu": 1000, "memory": 2 * GI}
    gangs = [
        need(
            "c1",
            100,
            0,
            instance_type="c6a.4xlarge",
            same="rack",
            group=g,
            aggregate=small,
            min_unit=unit,
        )
        for g in ("g1", "g2", "g3")
    ]
    big = need(
        "c1",
        100,
        0,
        instance_type="c6a.4xlarge",
        same="rack",
        group="g4",
        aggregate={"cpu": 40_000, "memory": 80 * GI},
        min_unit=unit,
    )
    out = normalize(inventory(host), [*gangs, big])
    assert out[0] is big
    folded = out[1]
    assert folded.profile.same is None
    assert all(r.operator is not Operator.SAME for r in folded.profile.requirements)
    assert folded.aggregate == {"cpu": 12_000, "memory": 24 * GI}
    assert folded.min_unit == small
    assert folded.group == ""
    assert len(out) == 2


# E12 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("elapsed", "deleted"),
    [
        (59, []),
        (60, ["idle-spot"]),
        (120, ["idle-spot"]),
        (660, ["idle-od", "idle-spot"]),
        (3_600_000, ["idle-od", "idle-spot"]),
    ],
)
def test_e12_idle_release_after_the_capacity_type_hold(elapsed: float, deleted: list) -> None:  # type: ignore[type-arg]
    inv = inventory(
        machine("idle-bm", S.IDLE, capacity_type=BM),
        machine("idle-rsv", S.IDLE, capacity_type=CapacityType.RESERVED),
        machine("idle-od", S.IDLE, capacity_type=OD, price=1.0),
        machine("idle-spot", S.IDLE, capacity_type=SPOT, price=0.30),
        machine("idle-un", S.IDLE, capacity_type=CapacityType.UNSPECIFIED),
        now=1000.0,
    )
    actions = phase3.releases(inv, claimed=set(), now=1000.0 + elapsed)
    assert [a.machine_id for a in actions] == deleted
    assert all((a.cluster, a.grace_seconds, a.reason) == ("", 0, "phase3.release") for a in actions)


def test_e12_a_claimed_idle_machine_is_never_released_and_the_zero_policy_releases_nothing() -> (
    None
):
    inv = inventory(machine("idle-od", S.IDLE, capacity_type=OD), now=0.0)
    assert phase3.releases(inv, claimed={"idle-od"}, now=10**9) == []
    assert phase3.releases(inv, claimed=set(), now=10**9, holds={}) == []


# E13 -----------------------------------------------------------------------------------------
def test_e13_a_sudden_near_empty_rollup_is_held_twice_then_believed() -> None:
    q = RollupQuarantine()
    assert q.admit("c", 20)
    assert not q.admit("c", 1) and q.held("c") == 1
    assert not q.admit("c", 1) and q.held("c") == 2
    assert q.admit("c", 1) and q.held("c") == 0


def test_e13_small_drops_and_small_baselines_are_accepted_at_once() -> None:
    q = RollupQuarantine()
    assert q.admit("a", 20) and q.admit("a", 2)  # 2 is not < 0.1 x 20
    assert q.admit("b", 9) and q.admit("b", 0)  # below the 10-row floor


# E14 -----------------------------------------------------------------------------------------
def test_e14_shortfalls_sum_per_profile_and_age() -> None:
    from bigfleet.shard.engine.decision.actions import Unsatisfied

    gang_a = need("c1", 500, 2, same="rack", group="A")
    gang_b = need("c1", 500, 3, same="rack", group="B")
    q = need("c1", 100, 0, instance_type="c6a", aggregate={"cpu": 4000}, min_unit={})
    ledger = ShortfallLedger()
    ledger.record(
        [
            Unsatisfied(need=gang_a, deficit=gpu(2)),
            Unsatisfied(need=gang_b, deficit=gpu(3)),
            Unsatisfied(need=q, deficit={"cpu": 4000}),
        ]
    )
    p_entry, q_entry = ledger.report()
    assert (p_entry.deficit, p_entry.age_cycles) == (gpu(5), 1)
    assert (q_entry.deficit, q_entry.age_cycles) == ({"cpu": 4000}, 1)
    ledger.record([Unsatisfied(need=gang_a, deficit=gpu(2))])
    (entry,) = ledger.report()
    assert (entry.deficit, entry.age_cycles) == (gpu(2), 2)


def test_rails_dry_run_counts_everything_and_executes_nothing() -> None:
    inv = _e8_inventory()
    engine = Engine(EngineSettings(rails=RailSettings(dry_run=True)))
    result = engine.cycle(inv, table(need("c1", 100, 3)), {"c1"}, now=0)
    assert result.rails.execute == []
    assert result.rails.dry_run == {"Reclaim": 2}


def test_rails_pause_switches_hold_back_their_kinds_only() -> None:
    inv = inventory(
        machine("i-1", S.IDLE),
        machine("c-1", S.CONFIGURED, cluster="gone"),
    )
    demand = table(need("c1", 100, 1))
    paused = Engine(
        EngineSettings(rails=RailSettings(pause_acquisitions=True, reclaim_cap_fraction=0))
    )
    result = paused.cycle(inv, demand, {"c1", "gone"}, now=0)
    assert kinds(result.rails.execute) == [("Reclaim", "c-1")]
    assert result.rails.suppressed == {"Bootstrap": 1}
    no_reclaim = Engine(EngineSettings(rails=RailSettings(pause_reclaims=True)))
    result = no_reclaim.cycle(inv, demand, {"c1", "gone"}, now=0)
    assert kinds(result.rails.execute) == [("Bootstrap", "i-1")]
    assert result.rails.suppressed == {"Reclaim": 1}


def test_rails_truncate_to_max_actions_per_cycle() -> None:
    inv = inventory(*(machine(f"i-{i}", S.IDLE) for i in range(5)))
    engine = Engine(EngineSettings(rails=RailSettings(max_actions_per_cycle=2)))
    result = engine.cycle(inv, table(need("c1", 1, 5)), {"c1"}, now=0)
    assert len(result.rails.execute) == 2 and result.rails.truncated == 3


def test_an_unclaimed_victim_is_preempted_once_not_also_reclaimed() -> None:
    # Regression found by the no-double-action property: Phase 2 and Phase 3 both chose
    # the same unclaimed Configured machine.
    inv = inventory(machine("m-0", S.CONFIGURED, cluster="c1", priority=0))
    result = Engine(NO_RAILS).cycle(inv, table(need("c2", 100, 1)), {"c1", "c2"}, now=0)
    assert kinds(result.decided) == [("Preempt", "m-0")]
    assert result.deduped == 1


def test_an_unchanged_cycle_reuses_its_decisions_and_any_change_recomputes() -> None:
    inv = inventory(machine("i-0", S.IDLE), machine("i-1", S.IDLE))
    demand = table(need("c1", 100, 1))
    engine = Engine(NO_RAILS)
    first = engine.cycle(inv, demand, {"c1"}, now=0)
    again = engine.cycle(inv, demand, {"c1"}, now=1)
    assert (first.reused, again.reused) == (False, True)
    assert kinds(again.decided) == kinds(first.decided) == [("Bootstrap", "i-0")]
    demand.replace("c1", [need("c1", 100, 2)])
    changed = engine.cycle(inv, demand, {"c1"}, now=2)
    assert not changed.reused
    assert kinds(changed.decided) == [("Bootstrap", "i-0"), ("Bootstrap", "i-1")]
    inv.upsert(machine("i-0", S.CONFIGURED, cluster="c1"), now=3)
    moved = engine.cycle(inv, demand, {"c1"}, now=3)
    assert not moved.reused and kinds(moved.decided) == [("Bootstrap", "i-1")]


def test_replaying_identical_rows_or_records_changes_no_version() -> None:
    inv = inventory(machine("i-0", S.IDLE))
    demand = table(need("c1", 100, 1))
    versions = (inv.version, demand.version)
    inv.upsert(machine("i-0", S.IDLE), now=99)
    demand.replace("c1", [need("c1", 100, 1)])
    assert (inv.version, demand.version) == versions
    assert inv.idle_since("i-0") == 0.0
