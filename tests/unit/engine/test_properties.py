"""Invariants of the engine under random inventories and demand (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigfleet import penalty
from bigfleet.providers_fake.config import FleetConfig, Pool
from bigfleet.shard import codec
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision.actions import ActionKind
from bigfleet.shard.engine.machine import INSTANCE_TYPE_KEY, Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.profile import Operator, Profile, Requirement, Spread
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.sim.shard_loop import SimShard
from bigfleet.wire import capacity_pb2
from tests.unit.engine.builders import CLUSTERS, RACKS, SIZE, TYPES, inventory, machine

S = MachineState
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def machines(draw: st.DrawFn) -> list[Machine]:
    out = []
    for i in range(draw(st.integers(0, 25))):
        state = draw(st.sampled_from([S.SPECULATIVE, S.IDLE, S.CONFIGURED, S.CONFIGURING]))
        itype = draw(st.sampled_from(TYPES))
        cluster = draw(st.sampled_from(CLUSTERS)) if state in (S.CONFIGURED, S.CONFIGURING) else ""
        out.append(
            machine(
                f"m-{i:02d}",
                state,
                cluster=cluster,
                instance_type=itype,
                alloc=SIZE[itype],
                price=draw(st.sampled_from([0.0, 0.5, 2.0])),
                p=draw(st.sampled_from([0.0, 0.1])),
                labels={"rack": draw(st.sampled_from(RACKS))},
                priority=draw(st.integers(0, 5)) * 100 if state == S.CONFIGURED else 0,
            )
        )
    return out


@st.composite
def needs(draw: st.DrawFn) -> list[Need]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        requirements = [
            Requirement(INSTANCE_TYPE_KEY, Operator.IN, (draw(st.sampled_from(TYPES)),))
        ]
        group = ""
        if draw(st.booleans()):
            requirements.append(Requirement("rack", Operator.SAME))
            group = f"g{i}"
        spread = (Spread("rack", 1, "DoNotSchedule"),) if not group and draw(st.booleans()) else ()
        profile = Profile(
            tuple(requirements),
            spread,
            draw(st.integers(0, 5)) * 100,
            draw(st.sampled_from([penalty.ZERO, 5, penalty.PINNED])),
            penalty.ZERO,
        )
        out.append(
            Need(
                cluster=draw(st.sampled_from(CLUSTERS)),
                profile=profile,
                aggregate={"cpu": draw(st.integers(1, 12)) * 4000},
                min_unit={"cpu": 4000},
                group=group,
                arrival=i,
            )
        )
    return out


def _table(rows: list[Need]) -> NeedsTable:
    table = NeedsTable()
    for cluster in CLUSTERS:
        table.replace(cluster, [n for n in rows if n.cluster == cluster])
    return table


@FAST
@given(machines(), needs())
def test_no_machine_is_acted_on_twice_and_actions_start_from_the_right_state(
    fleet: list[Machine], demand: list[Need]
) -> None:
    inv = inventory(*fleet)
    result = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0))).cycle(
        inv, _table(demand), set(CLUSTERS), now=0
    )
    ids = [a.machine_id for a in result.decided]
    assert len(ids) == len(set(ids))
    start = {
        ActionKind.BOOTSTRAP: S.IDLE,
        ActionKind.PROVISION: S.SPECULATIVE,
        ActionKind.PREEMPT: S.CONFIGURED,
        ActionKind.RECLAIM: S.CONFIGURED,
        ActionKind.DELETE: S.IDLE,
    }
    for action in result.decided:
        m = inv.get(action.machine_id)
        assert m is not None and m.state == start[action.kind]
        if action.kind in (ActionKind.BOOTSTRAP, ActionKind.PROVISION):
            assert action.need is not None and action.need.profile.matches(m)
        if action.kind is ActionKind.RECLAIM:
            assert action.machine_id not in result.phase1.claimed
        if action.kind is ActionKind.PREEMPT:
            assert m.assigned_priority < action.preemptor_priority


@FAST
@given(machines())
def test_replayed_provider_records_never_duplicate_machines(fleet: list[Machine]) -> None:
    inv = inventory()
    for replay in (fleet, list(reversed(fleet)), fleet):
        for m in replay:
            inv.upsert(m, now=0)
    assert len(inv) == len({m.id for m in fleet})
    assert sum(inv.count_by_state().values()) == len(inv)
    assert sum(len(inv.in_state(s)) for s in MachineState) == len(inv)


@FAST
@given(needs())
def test_rollups_round_trip_through_the_wire(demand: list[Need]) -> None:
    for need in demand:
        wire = codec.need_to_wire(need)
        back = codec.need_from_wire(
            need.cluster,
            capacity_pb2.CapacityNeed.FromString(wire.SerializeToString()),
            need.arrival,
        )
        assert back == need


def _sim(idle: int, speculative: int) -> SimShard:
    pools = (
        Pool(
            prefix="idle",
            count=idle,
            state="idle",
            instance_type="t",
            resources={"cpu": "4"},
            capacity_type="bare-metal",
            price_per_hour=0,
        ),
        Pool(
            prefix="spec",
            count=speculative,
            state="speculative",
            instance_type="t",
            resources={"cpu": "4"},
            capacity_type="on-demand",
            price_per_hour=1.0,
        ),
    )
    return SimShard(FleetConfig(pools=pools), shard_id="prop")


def _rollup(cluster: str, units: int, priority: int) -> capacity_pb2.ClusterCapacityNeeds:
    need = capacity_pb2.CapacityNeed(
        requirements=[
            capacity_pb2.NodeSelectorRequirement(
                key=INSTANCE_TYPE_KEY,
                operator=capacity_pb2.NodeSelectorRequirement.OPERATOR_IN,
                values=["t"],
            )
        ],
        aggregate_resources={"cpu": str(4 * units)},
        min_unit={"cpu": "4"},
        priority=priority,
    )
    return capacity_pb2.ClusterCapacityNeeds(cluster_id=cluster, needs=[need] if units else [])


demands = st.lists(
    st.tuples(st.sampled_from(CLUSTERS), st.integers(0, 8), st.integers(0, 3)), max_size=8
)


@FAST
@given(demands, st.integers(0, 10), st.integers(0, 10))
def test_cycles_conserve_the_inventory(
    changes: list[tuple[str, int, int]], idle: int, speculative: int
) -> None:
    with _sim(idle, speculative) as shard:
        for cluster, units, priority in changes:
            shard.rollup(_rollup(cluster, units, priority * 1000))
            shard.cycle()
            assert len(shard.inventory) == idle + speculative == len(shard.fleet)


@FAST
@given(demands, st.integers(0, 10), st.integers(0, 10))
def test_steady_demand_converges_and_then_causes_no_churn(
    changes: list[tuple[str, int, int]], idle: int, speculative: int
) -> None:
    with _sim(idle, speculative) as shard:
        for cluster, units, priority in changes:
            shard.rollup(_rollup(cluster, units, priority * 1000))
        settled = [len(shard.cycle()) for _ in range(6)]
        # Demand is fixed from here on: nothing is drained, bought or released any more.
        assert [len(shard.cycle()) for _ in range(5)] == [0] * 5, settled
