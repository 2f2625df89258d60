"""AvailableCapacity hints grouped by machine kind say what a machine-by-machine count says."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import INSTANCE_TYPE_KEY, Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable, fits
from bigfleet.shard.engine.profile import Operator, Profile, Requirement
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.hints import Hints
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.wire import shard_pb2

S = MachineState
TYPES = ("m.small", "m.large")
Update = shard_pb2.AvailableCapacityUpdate

machines = st.lists(
    st.tuples(
        st.sampled_from((S.IDLE, S.SPECULATIVE, S.CONFIGURED)),
        st.sampled_from(TYPES),
        st.sampled_from(("a", "b")),  # a label value
        st.sampled_from((4_000, 16_000)),  # cpu milli
        st.integers(1, 9),  # price
    ),
    max_size=30,
)
needs = st.lists(
    st.tuples(
        st.sampled_from(((), ("m.small",), ("m.large",), TYPES)),  # pinned types
        st.sampled_from(("", "a")),  # a required label value, or none
        st.sampled_from((1_000, 8_000)),  # the unit's cpu milli
    ),
    min_size=1,
    max_size=6,
)


def _machine(i: int, spec: tuple[S, str, str, int, int]) -> Machine:
    state, itype, label, cpu, price = spec
    return Machine(
        id=f"m{i}",
        state=state,
        host="" if state is S.SPECULATIVE else f"fake/m{i}",
        cluster="c" if state is S.CONFIGURED else "",
        instance_type=itype,
        resources={"cpu": cpu},
        labels={"pool": label},
        price_per_hour=float(price),
    )


def _need(i: int, spec: tuple[tuple[str, ...], str, int]) -> Need:
    types, label, unit = spec
    requirements = []
    if types:
        requirements.append(Requirement(INSTANCE_TYPE_KEY, Operator.IN, types))
    if label:
        requirements.append(Requirement("pool", Operator.IN, (label,)))
    profile = Profile(tuple(requirements), (), 100 + i, 0, 0)
    return Need(
        cluster="c", profile=profile, aggregate={"cpu": unit}, min_unit={"cpu": unit}, arrival=i
    )


def _by_hand(inventory: Inventory, need: Need) -> tuple[int, int, float]:
    types = need.profile.pinned_types

    def fitting(state: S) -> list[Machine]:
        return [
            m
            for m in inventory.in_state(state)
            if (not types or m.instance_type in types) and fits(need, m)
        ]

    idle, speculative = fitting(S.IDLE), fitting(S.SPECULATIVE)
    confidence = (
        Update.CONFIDENCE_HIGH
        if idle
        else Update.CONFIDENCE_MEDIUM
        if speculative
        else Update.CONFIDENCE_NONE
    )
    cost = min(m.price_per_hour for m in idle) if idle and types else 0.0
    return len(idle) + len(speculative), confidence, cost


@settings(max_examples=150, deadline=None)
@given(machines, needs)
def test_grouped_hints_match_a_machine_by_machine_count(
    fleet: list[tuple[S, str, str, int, int]], demand: list[tuple[tuple[str, ...], str, int]]
) -> None:
    inventory = Inventory()
    for i, spec in enumerate(fleet):
        inventory.upsert(_machine(i, spec), 0.0)
    rows = [_need(i, spec) for i, spec in enumerate(demand)]
    table = NeedsTable()
    table.replace("c", rows)
    metrics = ShardMetrics(CollectorRegistry())
    channels = Channels(metrics, 1024)
    channel, _ = channels.install("c")  # connected
    Hints().emit(inventory, table, channels, now=0.0)

    async def drain() -> list[shard_pb2.ShardMessage]:
        return [await channel.outbox.next() for _ in range(len(channel.outbox))]

    sent = {
        u.supersedes_key: (u.available_count, u.confidence, u.cost_per_hour)
        for u in (frame.available_capacity for frame in asyncio.run(drain()))
    }
    assert sent == {f"available:{n.fingerprint}": _by_hand(inventory, n) for n in rows}
