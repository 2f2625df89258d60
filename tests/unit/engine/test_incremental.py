"""The engine's cross-cycle memos never change a decision (hypothesis).

A cycle replays the credit pass of needs whose inputs did not change and
reuses acquirable pools and fold answers; after any sequence of demand and
machine changes its Phase 1 must equal a Phase 1 computed from scratch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bigfleet import penalty
from bigfleet.shard.engine.cycle import CycleResult, Engine
from bigfleet.shard.engine.decision import phase1, phase2, phase3
from bigfleet.shard.engine.decision.actions import ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.normalize import normalize
from bigfleet.shard.engine.profile import Profile, Spread
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from tests.unit.engine.builders import CLUSTERS, RACKS, SIZE, TYPES, machine, profile

S = MachineState
_SMALL: dict[str, Any] = {"instance_type": "t-small", "alloc": SIZE["t-small"]}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _profile(
    itype: str | tuple[str, ...], same: bool, priority: int, spread: bool = False
) -> Profile:
    """Zero penalties, co-location on the rack, strict spread over racks when asked."""
    return profile(
        priority,
        interruption=penalty.ZERO,
        reclamation=penalty.ZERO,
        instance_type=itype,
        same="rack" if same else None,
        spread=Spread("rack", 1, "DoNotSchedule") if spread else None,
    )


@st.composite
def demand_of(draw: st.DrawFn, cluster: str) -> list[Need]:
    rows = []
    for i in range(draw(st.integers(0, 5))):
        same = draw(st.booleans())
        # Mostly one type; sometimes both or any, which share machines with every lane.
        itype = draw(st.sampled_from([*TYPES, *TYPES, TYPES, ()]))
        spread = not same and draw(st.integers(0, 4)) == 0
        rows.append(
            Need(
                cluster=cluster,
                profile=_profile(itype, same, draw(st.sampled_from([100, 200])), spread),
                aggregate={"cpu": draw(st.integers(1, 10)) * 4000},
                min_unit={"cpu": 4000},
                # Plain needs share the attribution ("", fingerprint) across clusters,
                # so Creating machines can be contested between clusters.
                group=f"{cluster}-g{i}" if same else "",
                arrival=i,
                # A parked gang keeps what it has and weighs no acquirable supply.
                parked=same and draw(st.integers(0, 5)) == 0,
            )
        )
    return rows


@st.composite
def a_machine(draw: st.DrawFn, machine_id: str) -> Machine:
    state = draw(st.sampled_from([S.SPECULATIVE, S.IDLE, S.CONFIGURED, S.CONFIGURING, S.CREATING]))
    itype = draw(st.sampled_from(TYPES))
    bound = state in (S.CONFIGURED, S.CONFIGURING)
    group, fingerprint = "", ""
    if state in (S.CREATING, S.CONFIGURED) and draw(st.booleans()):
        cluster = draw(st.sampled_from(CLUSTERS))
        same = draw(st.booleans())
        group = f"{cluster}-g{draw(st.integers(0, 4))}" if same else ""
        fingerprint = _profile(itype, same, draw(st.sampled_from([100, 200]))).fingerprint
    return machine(
        machine_id,
        state,
        cluster=draw(st.sampled_from(CLUSTERS)) if bound else "",
        instance_type=itype,
        alloc=SIZE[itype],
        price=draw(st.sampled_from([0.0, 0.5, 2.0])),
        p=draw(st.sampled_from([0.0, 0.1])),
        labels={"rack": draw(st.sampled_from(RACKS))},
        priority=100 if bound else 0,
        group=group,
        fingerprint=fingerprint,
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Machine], list[object]]:
    fleet = [draw(a_machine(f"m-{i:02d}")) for i in range(draw(st.integers(0, 20)))]
    changes: list[object] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["demand", "tweak", "reorder", "machine", "remove", "none"]))
        if kind in ("tweak", "reorder"):
            changes.append((kind, draw(st.sampled_from(CLUSTERS)), draw(st.integers(0, 4))))
        elif kind == "demand":
            cluster = draw(st.sampled_from(CLUSTERS))
            changes.append(("demand", cluster, draw(demand_of(cluster))))
        elif kind == "machine":
            changes.append(("machine", draw(a_machine(f"m-{draw(st.integers(0, 24)):02d}"))))
        elif kind == "remove":
            changes.append(("remove", f"m-{draw(st.integers(0, 24)):02d}"))
        else:
            changes.append(("none",))
    return fleet, changes


def _facts(result: phase1.Phase1Result) -> object:
    return (
        [(a.kind, a.machine_id, a.cluster, a.need) for a in result.actions],
        [
            (u.need, u.deficit, u.same_domain, u.same_satisfiable, u.acquired)
            for u in result.unsatisfied
        ],
        result.claimed,
        result.acquired,
    )


def _steps(memo: phase1.Phase1Memo) -> object:
    # With what a covered gang would be ranked again by next cycle: its credit side.
    return {
        cluster: [
            (s.need, s.credited, s.domain, s.reservations, s.credit_side) for s in steps.steps
        ]
        for cluster, steps in memo.clusters.items()
    }


@SETTINGS
@given(histories(), st.data())
def test_a_remembering_engine_decides_as_one_starting_afresh(
    history: tuple[list[Machine], list[object]], data: st.DataObject
) -> None:
    fleet, changes = history
    inv = Inventory()
    for m in fleet:
        inv.upsert(m, now=0.0)
    table = NeedsTable()
    for cluster in CLUSTERS:
        table.replace(cluster, data.draw(demand_of(cluster)))
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    reclaim_memo = phase3.ReclaimMemo()
    for step, change in enumerate([("none",), *changes]):
        match change:
            case ("demand", str(cluster), list(rows)):
                # Re-stamped arrivals make the rows differ even when drawn alike.
                table.replace(cluster, [replace(n, arrival=n.arrival + step) for n in rows])
            case ("tweak", str(cluster), int(at)) if table.rows(cluster):
                # One need of the roll-up grows by a unit; the rest stay as they were.
                rows = list(table.rows(cluster))
                n = rows[at % len(rows)]
                rows[at % len(rows)] = replace(n, aggregate={"cpu": n.aggregate["cpu"] + 4000})
                table.replace(cluster, rows)
            case ("reorder", str(cluster), int(at)) if table.rows(cluster):
                # One need now arrived first: needs of equal priority change order.
                rows = list(table.rows(cluster))
                n = rows[at % len(rows)]
                rows[at % len(rows)] = replace(n, arrival=-step)
                table.replace(cluster, rows)
            case ("machine", Machine() as m):
                inv.upsert(m, now=float(step))
            case ("remove", str(machine_id)):
                inv.remove(machine_id)
        result, afresh = _cycle_as_afresh(engine, inv, table, set(CLUSTERS), step)
        event(f"needs replayed: {'some' if engine.phase1_memo.replayed else 'none'}")
        # Phase 3 passes over clusters by these counts: they must be exact, replayed or not.
        counted = _configured_claims(inv, result.phase1)
        assert result.phase1.configured_claims == counted == afresh.configured_claims
        _reclaims_as_scanned(inv, result, set(CLUSTERS), reclaim_memo)
        # Phase 2 keeps its victims' priority floor while their stamp stands.
        assert result.phase2 == phase2.run(inv, result.phase1.unsatisfied, engine.settings)
        event(f"preemptions: {'some' if result.phase2.actions else 'none'}")


def _cycle_as_afresh(
    engine: Engine, inv: Inventory, table: NeedsTable, reported: set[str], step: int
) -> tuple[CycleResult, phase1.Phase1Result]:
    """Run the remembering engine's cycle and a Phase 1 from scratch on the same inputs,
    and hold the two to the same decisions and the same steps."""
    fresh_memo = phase1.Phase1Memo()
    demand = engine.parking.stamp(normalize(inv, table.snapshot()))
    afresh = phase1.run(inv, demand, fresh_memo)
    result = engine.cycle(inv, table, reported, now=float(step))
    assert _facts(result.phase1) == _facts(afresh)
    # Inside too: every need credited and reserved the same machines, in order,
    # so what the next cycle replays is what a fresh cycle would have done.
    assert _steps(engine.phase1_memo) == _steps(fresh_memo)
    return result, afresh


def _reclaims_as_scanned(
    inv: Inventory, result: CycleResult, reported: set[str], memo: phase3.ReclaimMemo
) -> None:
    """Phase 3's shortcuts find what scanning every Configured machine finds: by claim
    counts, and by the clusters Phase 1 says claim what they claimed last cycle."""
    claimed = result.phase1.claimed.keys()
    scanned = phase3.reclaims(inv, claimed, reported)
    counts = result.phase1.configured_claims
    assert phase3.reclaims(inv, claimed, reported, configured_claims=counts) == scanned
    same = result.phase1.same_claims
    kept = phase3.reclaims(
        inv, claimed, reported, configured_claims=counts, same_claims=same, memo=memo
    )
    assert kept == scanned
    # The engine's own (kept) reclaims, less machines an earlier phase acts on.
    earlier = {a.machine_id for a in result.decided if a.kind != ActionKind.RECLAIM}
    decided = [a for a in result.decided if a.kind == ActionKind.RECLAIM]
    assert decided == [a for a in scanned if a.machine_id not in earlier]
    event(f"reclaims: {'some' if scanned else 'none'}")
    event(f"clusters claiming as before: {'some' if same else 'none'}")


def _configured_claims(inv: Inventory, result: phase1.Phase1Result) -> dict[str, int]:
    """Per cluster, its claimed Configured machines, counted one by one."""
    counts: dict[str, int] = {}
    for machine_id in result.claimed:
        m = inv.get(machine_id)
        if m is not None and m.state == S.CONFIGURED:
            counts[m.cluster] = counts.get(m.cluster, 0) + 1
    return counts


def test_a_recomputed_gang_makes_later_needs_on_its_types_recompute_too() -> None:
    # The gang picks its rack by where acquirable supply is; the plain need after it
    # (lower priority, same type) takes what the gang left of the cluster's machines.
    inv = Inventory()
    for m in (
        machine("bound-r1", S.CONFIGURED, cluster="c1", labels={"rack": "r1"}, **_SMALL),
        machine("bound-r2", S.CONFIGURED, cluster="c1", labels={"rack": "r2"}, **_SMALL),
        machine("idle-a", S.IDLE, labels={"rack": "r1"}, **_SMALL),
    ):
        inv.upsert(m, now=0.0)
    gang = Need(
        cluster="c1",
        profile=_profile("t-small", True, 200),
        aggregate={"cpu": 8000},
        min_unit={"cpu": 4000},
        group="c1-gang",
    )
    plain = Need(cluster="c1", profile=_profile("t-small", False, 100), aggregate={"cpu": 4000})
    table = NeedsTable()
    table.replace("c1", [gang, plain])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    first = engine.cycle(inv, table, {"c1"}, now=0.0).phase1
    assert first.claimed["bound-r1"] == gang and first.claimed["bound-r2"] == plain

    # The Idle machine moves to rack r2: the gang now assembles there.
    inv.upsert(machine("idle-a", S.IDLE, labels={"rack": "r2"}, **_SMALL), now=1.0)
    second = engine.cycle(inv, table, {"c1"}, now=1.0).phase1
    assert second.claimed["bound-r2"] == gang and second.claimed["bound-r1"] == plain
    assert engine.phase1_memo.replayed == 0


def test_clusters_contesting_in_flight_machines_are_always_recomputed() -> None:
    # Plain needs of one profile in two clusters share an attribution, so both may
    # count the same Creating machine; whichever comes first in priority order wins.
    small = _profile("t-small", False, 100)
    inv = Inventory()
    creating = machine(
        "creating",
        S.CREATING,
        instance_type="t-small",
        alloc=SIZE["t-small"],
        fingerprint=small.fingerprint,
    )
    inv.upsert(creating, now=0.0)
    first_need = Need(cluster="c1", profile=small, aggregate={"cpu": 4000}, arrival=1)
    second_need = Need(cluster="c2", profile=small, aggregate={"cpu": 4000}, arrival=2)
    table = NeedsTable()
    table.replace("c1", [first_need])
    table.replace("c2", [second_need])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    assert engine.cycle(inv, table, {"c1", "c2"}, now=0.0).phase1.claimed["creating"] == first_need

    table.replace("c1", [])  # c2's own inputs are unchanged, yet it now gets the machine
    assert engine.cycle(inv, table, {"c1", "c2"}, now=1.0).phase1.claimed["creating"] == second_need


GANG_RACKS = ("r1", "r2", "r3", "r4", "r5")


@st.composite
def covered_gangs(draw: st.DrawFn) -> tuple[list[Machine], list[Need], list[object]]:
    """Co-location gangs mostly covered by their cluster's machines, and a run of
    changes to the acquirable supply and to one gang's size: the cases where a
    covered gang is ranked again instead of seeded again, and only the racks whose
    supply moved, or whose machines earlier gangs now claim otherwise, are ranked."""
    gangs = []
    for i in range(draw(st.integers(1, 6))):
        prio = draw(st.sampled_from([100, 200]))
        gangs.append(
            Need(
                cluster="c1",
                profile=_profile("t-small", True, prio),
                aggregate={"cpu": 4000 * draw(st.integers(1, 3))},
                min_unit={"cpu": 4000},
                group=f"c1-g{i}",
                arrival=i,
            )
        )
    fleet = []
    for rack in GANG_RACKS:
        for j in range(draw(st.integers(0, 4))):
            owner = draw(st.sampled_from([None, *gangs]))
            fleet.append(
                machine(
                    f"{rack}-c{j}",
                    S.CONFIGURED,
                    cluster="c1",
                    labels={"rack": rack},
                    priority=100,
                    group=owner.group if owner else "",
                    fingerprint=owner.profile.fingerprint if owner else "",
                    **_SMALL,
                )
            )
    free_ids = [f"free-{i}" for i in range(8)]
    for machine_id in draw(st.lists(st.sampled_from(free_ids), unique=True, max_size=6)):
        state = draw(st.sampled_from([S.IDLE, S.IDLE, S.SPECULATIVE]))
        rack = draw(st.sampled_from(GANG_RACKS))
        fleet.append(machine(machine_id, state, labels={"rack": rack}, **_SMALL))
    changes: list[object] = []
    for _ in range(draw(st.integers(1, 8))):
        machine_id = draw(st.sampled_from(free_ids))
        if draw(st.integers(0, 2)) == 0:
            changes.append(
                ("tweak", draw(st.integers(0, len(gangs) - 1)), draw(st.sampled_from([-1, 1])))
            )
        elif draw(st.integers(0, 3)) == 0:
            changes.append(("remove", machine_id))
        else:
            state = draw(st.sampled_from([S.IDLE, S.IDLE, S.SPECULATIVE]))
            rack = draw(st.sampled_from(GANG_RACKS))
            changes.append(("machine", machine(machine_id, state, labels={"rack": rack}, **_SMALL)))
    return fleet, gangs, changes


@SETTINGS
@given(covered_gangs())
def test_covered_gangs_ranked_again_against_moved_supply_decide_as_afresh(
    case: tuple[list[Machine], list[Need], list[object]],
) -> None:
    fleet, gangs, changes = case
    inv = Inventory()
    for m in fleet:
        inv.upsert(m, now=0.0)
    table = NeedsTable()
    table.replace("c1", gangs)
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    reclaim_memo = phase3.ReclaimMemo()
    for step, change in enumerate([("none",), *changes]):
        match change:
            case ("machine", Machine() as m):
                inv.upsert(m, now=float(step))
            case ("remove", str(machine_id)):
                inv.remove(machine_id)
            case ("tweak", int(at), int(units)):
                rows = list(table.rows("c1"))
                cpu = max(4000, rows[at].aggregate["cpu"] + 4000 * units)
                rows[at] = replace(rows[at], aggregate={"cpu": cpu})
                table.replace("c1", rows)
        result, _ = _cycle_as_afresh(engine, inv, table, {"c1"}, step)
        _reclaims_as_scanned(inv, result, {"c1"}, reclaim_memo)
        event(f"needs replayed: {'some' if engine.phase1_memo.replayed else 'none'}")


@SETTINGS
@given(histories())
def test_patched_inventory_views_equal_views_sorted_afresh(
    history: tuple[list[Machine], list[object]],
) -> None:
    fleet, changes = history
    inv = Inventory()
    for m in fleet:
        inv.upsert(m, now=0.0)
    for step, change in enumerate(changes, start=1):
        # Read every view first, so that the change below patches cached views.
        handed_out = _views(inv)
        copies = [[list(view) for view in group] for group in handed_out[:5]]
        match change:
            case ("machine", Machine() as m):
                inv.upsert(m, now=float(step))
            case ("remove", str(machine_id)):
                inv.remove(machine_id)
        fresh = Inventory()
        for m in inv.all():
            fresh.upsert(m, now=inv.idle_since(m.id) or 0.0)
        assert _views(inv) == _views(fresh)
        # Views handed out before the change are never patched in place.
        assert [[list(view) for view in group] for group in handed_out[:5]] == copies


def _views(inv: Inventory) -> tuple[list[Any], ...]:
    return (
        [inv.in_state(s) for s in S],
        [inv.in_state_of_types(s, (t,)) for s in S for t in TYPES],
        [inv.keep_order(c, s) for c in CLUSTERS for s in (S.CONFIGURED, S.CONFIGURING)],
        [inv.keep_order_of_types(c, S.CONFIGURED, (t,)) for c in CLUSTERS for t in TYPES],
        [inv.idle_longest_first(t) for t in {m.capacity_type for m in inv.all()}],
        [inv.ceiling(s, (t,)) for s in S for t in TYPES],
        [inv.cluster_ceiling(c, S.CONFIGURED) for c in CLUSTERS],
    )


def test_one_changed_need_recomputes_only_needs_on_its_instance_types() -> None:
    inv = Inventory()
    for i, itype in enumerate(TYPES * 3):
        inv.upsert(
            machine(f"m-{i}", S.CONFIGURED, cluster="c1", instance_type=itype, alloc=SIZE[itype]),
            now=0.0,
        )
    small, big = (_profile(t, False, 100) for t in TYPES)
    rows = [
        Need(cluster="c1", profile=small, aggregate={"cpu": 4000}, arrival=1),
        Need(cluster="c1", profile=big, aggregate={"cpu": 16000}, arrival=2),
        Need(cluster="c2", profile=big, aggregate={"cpu": 16000}, arrival=3),
    ]
    table = NeedsTable()
    for cluster in ("c1", "c2"):
        table.replace(cluster, [n for n in rows if n.cluster == cluster])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    engine.cycle(inv, table, {"c1", "c2"}, now=0.0)
    assert engine.phase1_memo.replayed == 0

    # c1's small need grows: only it recomputes; c1's big need and c2 replay.
    table.replace("c1", [replace(rows[0], aggregate={"cpu": 8000}, arrival=5), rows[1]])
    result = engine.cycle(inv, table, {"c1", "c2"}, now=1.0)
    assert engine.phase1_memo.replayed == 2
    assert sorted(result.phase1.claimed) == ["m-0", "m-1", "m-2"]


def _two_machine_gang() -> tuple[NeedsTable, Engine]:
    """Cluster c1 wants one gang of two small machines in one rack; a fresh engine."""
    gang = Need(
        cluster="c1",
        profile=_profile("t-small", True, 200),
        aggregate={"cpu": 8000},
        min_unit={"cpu": 4000},
        group="c1-gang",
    )
    table = NeedsTable()
    table.replace("c1", [gang])
    return table, Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))


def test_a_covered_gang_is_ranked_again_when_acquirable_supply_moves() -> None:
    # Both racks can credit the two-machine gang; the rack with less spare
    # acquirable supply wins (least over-commitment). Moving Idle supply flips it.
    inv = Inventory()
    for rack in ("r1", "r2"):
        for i in range(2):
            m = machine(f"{rack}-{i}", S.CONFIGURED, cluster="c1", labels={"rack": rack}, **_SMALL)
            inv.upsert(m, now=0.0)
    inv.upsert(machine("idle-a", S.IDLE, labels={"rack": "r1"}, **_SMALL), now=0.0)
    table, engine = _two_machine_gang()
    assert sorted(engine.cycle(inv, table, {"c1"}, now=0.0).phase1.claimed) == ["r2-0", "r2-1"]

    # Supply lands in a third rack: the choice stands and the step is replayed.
    inv.upsert(machine("idle-b", S.IDLE, labels={"rack": "r3"}, **_SMALL), now=1.0)
    assert sorted(engine.cycle(inv, table, {"c1"}, now=1.0).phase1.claimed) == ["r2-0", "r2-1"]
    assert engine.phase1_memo.replayed == 1

    # Supply moves from rack r1 to rack r2: the gang now credits rack r1.
    inv.upsert(machine("idle-a", S.IDLE, labels={"rack": "r2"}, **_SMALL), now=2.0)
    assert sorted(engine.cycle(inv, table, {"c1"}, now=2.0).phase1.claimed) == ["r1-0", "r1-1"]


def test_a_replayed_need_counts_its_claims_in_groupings_built_this_cycle() -> None:
    # The first gang is recomputed (acquirable supply changed) and groups the bound
    # machines; the plain need is replayed after it and claims the one bound machine;
    # the second gang must see it claimed, as a fresh cycle would.
    inv = Inventory()
    for i in range(18):
        inv.upsert(machine(f"m-{i:02d}", S.SPECULATIVE, labels={"rack": "r1"}, **_SMALL), now=0)
    inv.upsert(machine("m-18", S.SPECULATIVE, labels={"rack": "r3"}, **_SMALL), now=0)
    inv.upsert(machine("m-19", S.CONFIGURED, cluster="c1", labels={"rack": "r3"}, **_SMALL), now=0)
    unit = {"cpu": 4000}
    table = NeedsTable()
    table.replace(
        "c1",
        [
            Need(cluster="c1", profile=_profile("t-small", False, 100), aggregate=unit),
            Need(
                cluster="c1",
                profile=_profile("t-small", True, 200),
                aggregate={"cpu": 12000},
                min_unit=unit,
                group="c1-g1",
                arrival=1,
            ),
            Need(
                cluster="c1",
                profile=_profile("t-small", True, 100),
                aggregate={"cpu": 8000},
                min_unit=unit,
                group="c1-g2",
                arrival=2,
            ),
        ],
    )
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    engine.cycle(inv, table, {"c1"}, now=0.0)
    inv.remove("m-00")
    afresh = phase1.run(inv, engine.parking.stamp(normalize(inv, table.snapshot())))
    assert _facts(engine.cycle(inv, table, {"c1"}, now=1.0).phase1) == _facts(afresh)
    assert engine.phase1_memo.replayed == 1


def test_a_phase_hands_out_one_list_per_pool() -> None:
    # Phase 1 keeps cursors and groupings under the identity of pool lists; a pool
    # built afresh per call (several pinned types) could die and lend its identity
    # to another list, whose head a stale cursor would then skip. The property
    # test above found that; this pins the invariant the fix rests on.
    inv = Inventory()
    inv.upsert(machine("m-01", S.CONFIGURED, cluster="c1", labels={"rack": "r1"}, **_SMALL), 0)
    need = Need(cluster="c1", profile=_profile(TYPES, False, 100), aggregate={"cpu": 4000})
    phase = phase1._Phase1(inv, [need], phase1.Phase1Memo())
    first, again = phase._creditable_pools(need), phase._creditable_pools(need)
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_a_reserving_gang_reserves_again_when_machines_it_passed_over_come_free() -> None:
    # Two gangs weigh the same Speculative machines through pools of different
    # interruption buckets; the second passed over the first's reservations.
    inv = Inventory()
    for i in range(4):
        inv.upsert(machine(f"m-{i}", S.SPECULATIVE, labels={"rack": "r1"}, **_SMALL), now=0)
    unit = {"cpu": 4000}

    def gang(cluster: str, priority: int, bucket: int) -> Need:
        same = _profile("t-small", True, priority)
        profile = Profile(same.requirements, (), priority, bucket, penalty.ZERO)
        return Need(
            cluster=cluster,
            profile=profile,
            aggregate={"cpu": 8000},
            min_unit=unit,
            group=f"{cluster}-gang",
        )

    table = NeedsTable()
    table.replace("c1", [gang("c1", 200, penalty.ZERO)])
    table.replace("c2", [gang("c2", 100, 5)])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    engine.cycle(inv, table, {"c1", "c2"}, now=0)
    second = engine.phase1_memo.clusters["c2"].steps[0]
    assert [r.machine_id for r in second.reservations] == ["m-2", "m-3"]
    assert second.skipped == ("m-0", "m-1")

    table.replace("c1", [])  # the first gang is gone: its machines come free
    engine.cycle(inv, table, {"c1", "c2"}, now=1)
    again = engine.phase1_memo.clusters["c2"].steps[0]
    assert [r.machine_id for r in again.reservations] == ["m-0", "m-1"]


def test_a_reserving_gang_is_replayed_while_no_machine_of_its_rack_moves() -> None:
    # The gang credits its one machine in rack r1 and reserves the Idle one there.
    inv = Inventory()
    inv.upsert(machine("r1-0", S.CONFIGURED, cluster="c1", labels={"rack": "r1"}, **_SMALL), 0.0)
    inv.upsert(machine("idle-a", S.IDLE, price=1.0, labels={"rack": "r1"}, **_SMALL), now=0.0)
    table, engine = _two_machine_gang()

    def reserved() -> list[str]:
        return [r.machine_id for r in engine.phase1_memo.clusters["c1"].steps[0].reservations]

    engine.cycle(inv, table, {"c1"}, now=0.0)
    assert reserved() == ["idle-a"]

    # Idle supply lands in another rack: the step is ranked again and replayed.
    inv.upsert(machine("idle-b", S.IDLE, labels={"rack": "r2"}, **_SMALL), now=1.0)
    bootstrapped = [a.machine_id for a in engine.cycle(inv, table, {"c1"}, now=1.0).decided]
    assert engine.phase1_memo.replayed == 1
    assert (reserved(), bootstrapped) == (["idle-a"], ["idle-a"])

    # A cheaper machine lands in its own rack, ahead of the one it reserved: seeded again.
    inv.upsert(machine("idle-c", S.IDLE, price=0.5, labels={"rack": "r1"}, **_SMALL), now=2.0)
    bootstrapped = [a.machine_id for a in engine.cycle(inv, table, {"c1"}, now=2.0).decided]
    assert engine.phase1_memo.replayed == 0
    assert (reserved(), bootstrapped) == (["idle-c"], ["idle-c"])


def _reclaimed(result: CycleResult) -> list[str]:
    return sorted(a.machine_id for a in result.decided if a.kind == ActionKind.RECLAIM)


def test_a_cluster_whose_last_need_went_reclaims_what_that_need_held() -> None:
    # Its other need replays, but the step left over at the end had claimed a machine:
    # the cluster's claims moved, so Phase 3 must look again.
    inv = Inventory()
    for i in range(3):
        inv.upsert(machine(f"m-{i}", S.CONFIGURED, cluster="c1", **_SMALL), now=0.0)
    first, second = (
        Need(cluster="c1", profile=_profile("t-small", False, p), aggregate={"cpu": 4000})
        for p in (200, 100)
    )
    table = NeedsTable()
    table.replace("c1", [first, second])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    before = engine.cycle(inv, table, {"c1"}, now=0.0)
    assert len(_reclaimed(before)) == 1  # the spare machine: Phase 3 kept what it found
    table.replace("c1", [first])
    result = engine.cycle(inv, table, {"c1"}, now=1.0)
    assert engine.phase1_memo.replayed == 1
    assert "c1" not in result.phase1.same_claims
    assert _reclaimed(result) == sorted(
        set(_reclaimed(before)) | {*before.phase1.claimed} - {*result.phase1.claimed}
    )


def test_a_machine_joining_a_cluster_that_claims_as_before_is_reclaimed() -> None:
    inv = Inventory()
    for i in range(2):
        inv.upsert(machine(f"m-{i}", S.CONFIGURED, cluster="c1", **_SMALL), now=0.0)
    need = Need(cluster="c1", profile=_profile("t-small", False, 100), aggregate={"cpu": 4000})
    table = NeedsTable()
    table.replace("c1", [need])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    assert _reclaimed(engine.cycle(inv, table, {"c1"}, now=0.0)) == ["m-1"]
    inv.upsert(machine("m-2", S.CONFIGURED, cluster="c1", **_SMALL), now=1.0)
    result = engine.cycle(inv, table, {"c1"}, now=1.0)
    assert result.phase1.same_claims == {"c1"}  # credited m-0 again
    assert _reclaimed(result) == ["m-1", "m-2"]


def test_a_kept_fold_answer_follows_the_machines_it_read() -> None:
    # The same gang object, cycle after cycle: it folds only while a machine that
    # hosts it whole is there to be used.
    inv = Inventory()
    inv.upsert(machine("small", S.CONFIGURED, cluster="c1", labels={"rack": "r1"}, **_SMALL), 0)
    gang = Need(
        cluster="c1", profile=_profile(TYPES, True, 100), aggregate={"cpu": 16000}, group="g"
    )
    table = NeedsTable()
    table.replace("c1", [gang])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))

    def folded(now: float) -> bool:
        engine.cycle(inv, table, {"c1"}, now=now)
        afresh = normalize(inv, table.snapshot())
        assert _demand(engine) == afresh
        return afresh[0].profile.same is None

    assert not folded(0.0)
    big = machine("big", S.IDLE, labels={"rack": "r2"}, instance_type="t-big", alloc=SIZE["t-big"])
    inv.upsert(big, now=1.0)
    assert folded(1.0)
    inv.remove("big")
    assert not folded(2.0)


def _demand(engine: Engine) -> list[Need]:
    normalized = engine._normalized
    assert normalized is not None
    return normalized.demand


def test_claims_stored_late_answer_for_the_inventory_the_phase_saw() -> None:
    # c1 replays whole while c2 changes, so c1's claims are stored only when asked.
    inv = Inventory()
    for name, cluster in (("m-0", "c1"), ("m-1", "c2")):
        inv.upsert(machine(name, S.CONFIGURED, cluster=cluster, **_SMALL), now=0.0)
    plain = _profile("t-small", False, 100)
    needs = {c: Need(cluster=c, profile=plain, aggregate={"cpu": 4000}) for c in ("c1", "c2")}
    table = NeedsTable()
    for cluster, need in needs.items():
        table.replace(cluster, [need])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    engine.cycle(inv, table, {"c1", "c2"}, now=0.0)
    table.replace("c2", [replace(needs["c2"], aggregate={"cpu": 8000})])
    result = engine.cycle(inv, table, {"c1", "c2"}, now=1.0).phase1
    assert engine.phase1_memo.replayed == 1

    # The machine goes back to Idle after the phase: the result still says what it saw.
    inv.upsert(machine("m-0", S.IDLE, **_SMALL), now=2.0)
    assert "m-0" in result.claimed and result.claimed["m-0"] == needs["c1"]
    assert sorted(result.claimed) == ["m-0", "m-1"]
