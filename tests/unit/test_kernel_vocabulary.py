"""The kernel's single definitions: requirement operators, lifecycle, errors, clock, supervise."""

from __future__ import annotations

import asyncio
import typing
from datetime import UTC, datetime

import grpc
import pytest

from bigfleet import errors, lifecycle, requirements, timestamps
from bigfleet.clock import SimulatedClock, woken
from bigfleet.requirements import Operator
from bigfleet.supervise import supervise
from bigfleet.wire import capacity_pb2, provider_pb2

S = lifecycle.MachineState


def test_every_operator_round_trips_through_the_wire() -> None:
    wire = capacity_pb2.NodeSelectorRequirement.Operator
    for op in Operator:
        assert Operator.from_wire(op.wire) is op
        assert wire.Name(op.wire) == f"OPERATOR_{op.name}"
    with pytest.raises(ValueError, match="unknown requirement operator 0"):
        Operator.from_wire(0)


def test_the_literal_types_name_the_same_operators() -> None:
    assert set(typing.get_args(requirements.OperatorName)) == {op.value for op in Operator}
    assert set(typing.get_args(requirements.NodeSelectorOperatorName)) == {
        op.value for op in requirements.NODE_SELECTOR_OPERATORS
    }


def test_machine_states_equal_the_wire_enum() -> None:
    for state in S:
        assert provider_pb2.MachineState.Name(state) == f"MACHINE_STATE_{state.name}"


def test_legal_moves_are_the_four_calls_plus_the_bootstrap_rollback() -> None:
    legal = lifecycle.LEGAL_TRANSITIONS
    assert legal[S.SPECULATIVE] == {S.CREATING}
    assert legal[S.CREATING] == {S.IDLE, S.FAILED}
    assert legal[S.IDLE] == {S.CONFIGURING, S.DELETING}
    assert legal[S.CONFIGURING] == {S.CONFIGURED, S.FAILED, S.IDLE}
    assert legal[S.CONFIGURED] == {S.DRAINING}
    assert legal[S.DRAINING] == {S.IDLE, S.FAILED}
    assert legal[S.DELETING] == {S.SPECULATIVE, S.FAILED}
    assert legal[S.FAILED] == legal[S.UNSPECIFIED] == frozenset()
    assert {c.source for c in lifecycle.Call} | {
        c.target for c in lifecycle.Call
    } == lifecycle.STABLE


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    "cls", [errors.StaleFencingToken, errors.MachineNotFound, errors.InvalidRequest]
)
def test_a_provider_error_survives_the_round_trip(cls: type[errors.BigFleetError]) -> None:
    back = errors.from_rpc_error(_Failed(cls.code, "why"))
    assert type(back) is cls and str(back) == "why"


def test_an_unlisted_code_keeps_its_code() -> None:
    back = errors.from_rpc_error(_Failed(grpc.StatusCode.RESOURCE_EXHAUSTED, "full"))
    assert (
        isinstance(back, errors.ProviderError) and back.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def test_timestamps_are_rfc3339_utc() -> None:
    assert (
        timestamps.rfc3339(datetime(2026, 12, 6, 3, 49, 13, tzinfo=UTC)) == "2026-12-06T03:49:13Z"
    )
    assert timestamps.from_unix_ns(1_000_000_000 * 60) == "1970-01-01T00:01:00Z"
    assert timestamps.rfc3339().endswith("Z")


async def test_a_simulated_clock_wakes_sleepers_in_order_only_when_advanced() -> None:
    clock = SimulatedClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(f"{name}@{clock.monotonic():g}")

    tasks = [asyncio.create_task(sleeper("late", 10)), asyncio.create_task(sleeper("soon", 2))]
    await asyncio.sleep(0)
    clock.advance(1)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(9)
    await asyncio.gather(*tasks)
    assert woke == ["soon@10", "late@10"]
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_supervise_stops_everything_when_told() -> None:
    stop = asyncio.Event()
    cancelled = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def stop_soon() -> None:
        await asyncio.sleep(0.01)
        stop.set()

    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(stop_soon()))
    await asyncio.wait_for(supervise(stop, forever("a"), forever("b")), 5)
    assert sorted(cancelled) == ["a", "b"]


async def test_supervise_lets_stop_watchers_finish_within_grace() -> None:
    stop = asyncio.Event()
    finished = []

    async def watcher() -> None:
        await stop.wait()
        await asyncio.sleep(0.01)  # a flush on the way out
        finished.append("watcher")

    asyncio.get_running_loop().call_later(0.01, stop.set)
    await asyncio.wait_for(supervise(stop, watcher(), grace=2), 5)
    assert finished == ["watcher"]


async def test_an_error_surfaces_and_stops_everyone() -> None:
    stop = asyncio.Event()

    async def watcher() -> None:
        await stop.wait()

    async def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(supervise(stop, watcher(), fails()), 5)
    assert caught.group_contains(RuntimeError, match="boom")
    assert stop.is_set()


async def test_a_loop_that_ends_on_its_own_stops_the_rest() -> None:
    stop = asyncio.Event()

    async def ends() -> None:
        return None

    async def watcher() -> None:
        await stop.wait()

    await asyncio.wait_for(supervise(stop, ends(), watcher(), grace=1), 5)
    assert stop.is_set()


async def _settle() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_woken_follows_the_clock_or_the_event() -> None:
    clock = SimulatedClock()
    event = asyncio.Event()
    waiting = asyncio.create_task(woken(event, clock, 5))
    await _settle()
    clock.advance(4)
    await _settle()
    assert not waiting.done()
    clock.advance(1)
    assert await asyncio.wait_for(waiting, 5) is False
    waiting = asyncio.create_task(woken(event, clock, 5))
    await _settle()
    event.set()
    assert await asyncio.wait_for(waiting, 5) is True
