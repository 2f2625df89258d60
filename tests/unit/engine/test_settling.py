"""Under constant demand a fleet settles: once the decided actions are carried out, the
next cycles decide nothing, and no machine is bootstrapped and reclaimed by turns."""

from __future__ import annotations

from dataclasses import replace

from bigfleet import penalty
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import CapacityType, Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.profile import Profile
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from tests.unit.engine.builders import machine, profile

S = MachineState

# (id, state, cluster, rack, price): one instance type, one CPU a machine, two racks.
FLEET = (
    ("m03", S.SPECULATIVE, "", "r2", 1.0),
    ("m04", S.CONFIGURED, "c2", "r2", 1.0),
    ("m07", S.IDLE, "", "r3", 2.0),
    ("m11", S.IDLE, "", "r2", 2.0),
    ("m12", S.CONFIGURED, "c1", "r3", 1.0),
    ("m14", S.CONFIGURED, "c1", "r2", 2.0),
    ("m18", S.SPECULATIVE, "", "r2", 1.0),
    ("m25", S.CONFIGURED, "c1", "r3", 2.0),
    ("m26", S.CONFIGURED, "c1", "r2", 2.0),
    ("m31", S.CONFIGURED, "c1", "r3", 2.0),
    ("m39", S.CONFIGURED, "c2", "r3", 2.0),
    ("m44", S.SPECULATIVE, "", "r2", 2.0),
    ("m48", S.IDLE, "", "r2", 2.0),
    ("m49", S.CONFIGURED, "c2", "r3", 1.0),
    ("m51", S.CONFIGURED, "c1", "r3", 1.0),
)


def _fleet(rows: tuple[tuple[str, MachineState, str, str, float], ...] = FLEET) -> Inventory:
    inv = Inventory()
    for machine_id, state, cluster, rack, price in rows:
        m = machine(
            machine_id,
            state,
            cluster=cluster,
            price=price,
            p=0.05 if state == S.SPECULATIVE else 0.0,
            capacity_type=CapacityType.ON_DEMAND,
            alloc={"cpu": 1000},
            instance_type="t",
            labels={"rack": rack},
            priority=1000 if cluster else 0,
        )
        inv.upsert(m, now=0.0)
    return inv


def _gang(cluster: str, name: str, priority: int, interruption: int, size: int) -> Need:
    gang_profile: Profile = profile(
        priority, interruption=interruption, instance_type="t", same="rack"
    )
    return Need(
        cluster=cluster,
        profile=gang_profile,
        aggregate={"cpu": 1000 * size},
        min_unit={"cpu": 1000},
        group=name,
        arrival=int(name[-1]),
    )


def _carry_out(inv: Inventory, action: Action, now: float) -> None:
    """As a provider answering at once: bound machines carry their need's stamps."""
    m = inv.get(action.machine_id)
    assert m is not None
    moved: Machine
    if action.kind in (ActionKind.BOOTSTRAP, ActionKind.PROVISION):
        assert action.need is not None
        moved = replace(
            m,
            state=S.CONFIGURED,
            cluster=action.cluster,
            host=m.host or f"fake/{m.id}",
            assigned_priority=action.need.priority,
            assigned_need_fingerprint=action.need.fingerprint,
            assigned_group=action.need.group,
        )
    else:
        assert action.kind in (ActionKind.RECLAIM, ActionKind.PREEMPT)
        moved = replace(
            m, state=S.IDLE, cluster="", assigned_priority=0, assigned_need_fingerprint="",
            assigned_group="",
        )  # fmt: skip
    inv.upsert(moved, now)


def test_a_gang_served_by_unstamped_machines_does_not_take_another_gangs_rack() -> None:
    # c1's first gang is covered by four unstamped machines in rack r3. Its
    # second gang gathers in rack r2 and is given the Idle and Speculative
    # machines there, so r2 can cover the first gang too; neither rack holds a
    # machine of the first gang's own, and the spare supply in each decided
    # which it took. It must stay in r3: moving to r2 takes the second gang's
    # machines, sends that gang to r3 for an Idle machine and reclaims what it
    # leaves in r2, and that reclaimed machine swings the choice back the next
    # cycle, for ever.
    inv = _fleet()
    table = NeedsTable()
    b3, b16 = penalty.bucket_for_dollars(1), penalty.bucket_for_dollars(8000)
    table.replace("c1", [_gang("c1", "c1-g1", 1000, b3, 4), _gang("c1", "c1-g0", 100, b3, 5)])
    table.replace("c2", [_gang("c2", "c2-g2", 1000, b16, 2), _gang("c2", "c2-g0", 100, b3, 3)])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    decided: list[list[tuple[str, str]]] = []
    for now in range(6):
        actions = engine.cycle(inv, table, {"c1", "c2"}, float(now)).rails.execute
        decided.append(sorted((a.kind.name, a.machine_id) for a in actions))
        for action in actions:
            _carry_out(inv, action, float(now + 1))
    assert decided[0]  # the gangs gather
    assert decided[1:] == [[]] * 5, decided


def test_a_plain_need_leaves_a_gang_the_machines_it_was_given() -> None:
    # c1's plain need holds its one machine (m5, the dearer); its gang gathers
    # in rack r1 on two cheap Idle machines. Then those sort first in keep
    # order: a plain need that credited them took one from the gang, which
    # acquired the third Idle machine in r1 while m5 was reclaimed, and the
    # next machine the gang was given sorted first again.
    inv = _fleet(
        (
            ("m1", S.IDLE, "", "r1", 1.0),
            ("m2", S.IDLE, "", "r1", 1.0),
            ("m3", S.IDLE, "", "r1", 1.0),
            ("m5", S.CONFIGURED, "c1", "r2", 2.0),
        )
    )
    plain = Need(
        cluster="c1",
        profile=profile(1000, instance_type="t"),
        aggregate={"cpu": 1000},
        min_unit={"cpu": 1000},
    )
    table = NeedsTable()
    table.replace("c1", [plain, _gang("c1", "c1-g0", 100, penalty.bucket_for_dollars(1), 2)])
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    decided: list[list[tuple[str, str]]] = []
    for now in range(4):
        actions = engine.cycle(inv, table, {"c1"}, float(now)).rails.execute
        decided.append(sorted((a.kind.name, a.machine_id) for a in actions))
        for action in actions:
            _carry_out(inv, action, float(now + 1))
    assert decided[0] == [("BOOTSTRAP", "m1"), ("BOOTSTRAP", "m2")]
    assert decided[1:] == [[]] * 3, decided
