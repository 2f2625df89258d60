"""What the shard's state does while a cycle decides in the engine's thread: nothing the
cycle reads moves, and nothing that arrives meanwhile is lost."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bigfleet.shard.engine.machine import CapacityType, Machine, MachineState
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.wire import provider_pb2 as pb
from tests.unit.test_codec_validation import good_need, rollup

IDLE = MachineState.IDLE


def _state() -> ShardState:
    metrics = ShardMetrics(CollectorRegistry())
    return ShardState("s", 1, metrics, Channels(metrics, 64))


def _idle(machine_id: str) -> Machine:
    return Machine(id=machine_id, state=IDLE, host=f"fake/{machine_id}", instance_type="m")


def test_rollups_during_a_cycle_are_committed_when_it_ends_the_latest_per_cluster() -> None:
    state = _state()
    state.apply_rollup(rollup(good_need(), cluster="a"))
    version = state.table.version
    state.begin_cycle()
    state.apply_rollup(rollup(good_need(), good_need(), cluster="a"))
    state.apply_rollup(rollup(good_need(), cluster="b"))
    state.apply_rollup(rollup(good_need(), good_need(), good_need(), cluster="a"))
    state.forget("b")
    assert state.table.version == version and state.reported == {"a"}  # held still
    state.end_cycle()
    assert len(state.table.rows("a")) == 3  # the latest of a's roll-ups
    assert len(state.table) == 3  # the table's own count of its rows
    assert state.table.rows("b") == () and state.reported == {"a"}  # b forgotten after it


def test_an_inventory_write_during_a_cycle_waits_for_its_end_and_is_counted() -> None:
    state = _state()
    state.record(_idle("m1"))
    state.begin_cycle()
    assert state.record(_idle("m2"))
    state.remove("m1")
    assert [m.id for m in state.inventory.all()] == ["m1"]  # the cycle's view held still
    state.end_cycle()
    assert [m.id for m in state.inventory.all()] == ["m2"]  # applied in order, none lost
    assert state.metrics.writes_deferred._value.get() == 2


def test_an_invalid_record_during_a_cycle_is_refused_at_once() -> None:
    state = _state()
    state.begin_cycle()
    assert not state.record(Machine(id="bad", state=MachineState.UNSPECIFIED))
    state.end_cycle()
    assert len(state.inventory) == 0
    assert state.metrics.writes_deferred._value.get() == 0


async def test_writers_wait_for_the_cycle_to_end() -> None:
    state = _state()
    order: list[str] = []

    async def writer() -> None:
        await state.settled()
        order.append("write")

    state.begin_cycle()
    task = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    assert order == []  # still waiting
    order.append("end")
    state.end_cycle()
    await task
    assert order == ["end", "write"]
    await state.settled()  # no cycle: returns at once


def test_one_failing_commit_after_a_cycle_keeps_the_others() -> None:
    state = _state()
    state.begin_cycle()
    state.apply_rollup(rollup(good_need(), cluster="a"))
    state.apply_rollup(rollup(good_need(), cluster="b"))
    commit = state._commit

    def failing(cluster: str, needs: list[Need], arrived: float) -> None:
        if cluster == "a":
            raise RuntimeError("a bug of ours")
        commit(cluster, needs, arrived)

    state._commit = failing  # type: ignore[method-assign]
    state.end_cycle()
    assert state.table.rows("a") == () and len(state.table.rows("b")) == 1
    assert not state.deciding and state._settled.is_set()  # writers go on


async def test_an_executor_write_cancelled_while_it_waits_for_a_cycle_still_lands() -> None:
    """An action's timeout may cancel it while its rollback or failure waits for a cycle;
    the write happens when the cycle ends all the same."""
    state = _state()
    state.record(_idle("m1"))
    executor = Executor(
        inventory=state.inventory,
        record=state.record,
        in_flight=set(),
        channels=state.channels,
        metrics=state.metrics,
        providers={},
        owners={},
        gate=state,
    )
    state.begin_cycle()
    failing = asyncio.create_task(executor._fail("m1", "fenced"))
    await asyncio.sleep(0.01)
    failing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await failing
    machine = state.inventory.get("m1")
    assert machine is not None and machine.state is IDLE  # the cycle's view held still
    state.end_cycle()
    await asyncio.sleep(0.01)
    machine = state.inventory.get("m1")
    assert machine is not None and machine.state is MachineState.FAILED
    assert state.metrics.writes_deferred._value.get() == 0  # it waited; nothing went late


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("record", "remove", "begin", "end")),
            st.integers(0, 5),  # machine
            st.sampled_from((MachineState.IDLE, MachineState.SPECULATIVE)),
            st.sampled_from((CapacityType.ON_DEMAND, CapacityType.SPOT)),
        ),
        max_size=40,
    )
)
def test_machine_counts_follow_every_write(
    ops: list[tuple[str, int, MachineState, CapacityType]],
) -> None:
    """The per-state, per-capacity-type counts the inventory gauge reads are kept as machines
    are written, removed or held for a cycle; they always say what a full count
    says."""
    state = _state()
    for op, i, machine_state, capacity in ops:
        if op == "record":
            host = f"fake/m{i}" if machine_state is MachineState.IDLE else ""
            state.record(
                Machine(id=f"m{i}", state=machine_state, host=host, capacity_type=capacity)
            )
        elif op == "remove":
            state.remove(f"m{i}")
        elif op == "begin" and not state.deciding:
            state.begin_cycle()
        elif op == "end" and state.deciding:
            state.end_cycle()
        if not state.deciding:
            full = Counter((m.state, m.capacity_type) for m in state.inventory.machines())
            assert state.inventory.count_by_kind() == full


async def test_a_long_listing_hands_the_loop_back_and_waits_out_a_cycle() -> None:
    """A shard's reconcile applies a listing in slices; a cycle that begins between two
    slices holds the rest back until it ends, and nothing is written under it."""
    state = _state()
    listing = [
        pb.Machine(
            id=f"m{i:03d}",
            state=pb.MACHINE_STATE_IDLE,
            host=pb.HostRef(provider="fake", ref=f"m{i:03d}"),
            instance_type="m",
            capacity_type=pb.CAPACITY_TYPE_ON_DEMAND,
        )
        for i in range(50)
    ]

    class Provider:
        async def list(self, since_revision: bytes = b"") -> pb.MachineList:
            return pb.MachineList(machines=listing, revision=b"1")

    reconciler = Reconciler(state, {"fake": Provider()}, yield_every=10)  # type: ignore[dict-item]
    seen: list[int] = []

    async def cycle_between_slices() -> None:
        while len(state.inventory) < 10:
            await asyncio.sleep(0)
        state.begin_cycle()
        seen.append(len(state.inventory))
        for _ in range(20):  # the pass is waiting, not writing, while the cycle decides
            await asyncio.sleep(0)
        seen.append(len(state.inventory))
        state.end_cycle()

    await asyncio.gather(reconciler.run(), cycle_between_slices())
    assert seen[0] == seen[1] and 0 < seen[0] < 50  # began mid-pass; held still
    assert len(state.inventory) == 50 and reconciler.ready
    assert state.metrics.writes_deferred._value.get() == 0
