"""Supervised loops (`bigfleet.supervise.Loops`): restart with backoff, counting, liveness.

Time is the simulated clock's: backoffs and heartbeats move only when a test advances it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from bigfleet.clock import SimulatedClock
from bigfleet.supervise import Loops, beat, supervise


async def settle() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(10):
        await asyncio.sleep(0)


def restarts(registry: CollectorRegistry, loop: str) -> float:
    value = registry.get_sample_value("bigfleet_loop_restarts_total", {"loop": loop})
    return -1.0 if value is None else value


def loops_on(clock: SimulatedClock, **kwargs: float) -> tuple[Loops, CollectorRegistry]:
    registry = CollectorRegistry()
    # Jitter pinned to its top: each backoff is exactly min(cap, 0.5 s * 2**n).
    return Loops(registry, clock, jitter=lambda: 1.0, **kwargs), registry


async def test_a_loop_that_raises_is_logged_counted_and_restarted_after_a_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SimulatedClock()
    loops, registry = loops_on(clock)
    runs = []

    async def body() -> None:
        runs.append(clock.monotonic())
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, logger="bigfleet.supervise")
    task = asyncio.create_task(loops.run("demo", body))
    await settle()
    assert runs == [0.0]
    assert restarts(registry, "demo") == 1
    (record,) = caplog.records
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])
    assert record.__dict__["loop"] == "demo"
    for waited, expected_runs in ((0.4, 1), (0.1, 2), (0.9, 2), (0.1, 3), (2.0, 4)):
        clock.advance(waited)
        await settle()
        assert len(runs) == expected_runs, (clock.monotonic(), runs)
    assert runs == [0.0, 0.5, 1.5, 3.5]  # 0.5 s, 1 s, 2 s between starts
    assert restarts(registry, "demo") == 4
    assert not task.done()  # still going: it never gives up
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_the_backoff_is_capped_and_jittered_within_half_to_full() -> None:
    loops = Loops(jitter=lambda: 0.0, max_backoff_s=30.0)
    assert [loops.backoff(n) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert loops.backoff(100) == 15.0
    assert Loops(jitter=lambda: 1.0).backoff(100) == 30.0


async def test_cancellation_stops_a_loop_whether_running_or_backing_off() -> None:
    clock = SimulatedClock()
    loops, _ = loops_on(clock)

    async def waits() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("boom")

    running = asyncio.create_task(loops.run("waits", waits))
    backing_off = asyncio.create_task(loops.run("fails", fails))
    await settle()
    assert {s.name for s in loops.running} == {"waits", "fails"}
    for task in (running, backing_off):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert loops.running == []  # a cancelled loop is no longer watched
    assert loops.problems() == []


async def test_a_loop_that_stops_beating_is_reported_stuck() -> None:
    clock = SimulatedClock()
    loops, _ = loops_on(clock)
    beating = True

    async def body() -> None:
        while True:
            if beating:
                beat()
            await clock.sleep(1)

    task = asyncio.create_task(loops.run("ticker", body, max_period_s=5))
    await settle()
    for _ in range(10):
        clock.advance(1)
        await settle()
        assert loops.problems() == []
    beating = False
    clock.advance(5)
    await settle()
    assert loops.problems() == []  # exactly the period: still alive
    clock.advance(1)
    await settle()
    (problem,) = loops.problems()
    assert problem.startswith("loop ticker stuck") and not loops.alive()
    beating = True
    clock.advance(1)
    await settle()
    assert loops.alive()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_period_can_follow_a_setting_that_changes() -> None:
    clock = SimulatedClock()
    loops, _ = loops_on(clock)
    period = [10.0]
    task = asyncio.create_task(
        loops.run("silent", asyncio.Event().wait, max_period_s=lambda: period[0])
    )
    await settle()
    clock.advance(8)
    assert loops.alive()
    period[0] = 5.0
    assert not loops.alive()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_loop_crashing_for_longer_than_dead_after_is_dead_until_it_runs_healthily() -> None:
    clock = SimulatedClock()
    loops, registry = loops_on(clock, dead_after_s=10.0, healthy_after_s=20.0, max_backoff_s=2.0)
    failing = True

    async def body() -> None:
        if failing:
            raise RuntimeError("still broken")
        await asyncio.Event().wait()

    task = asyncio.create_task(loops.run("flaky", body))
    await settle()
    for _ in range(10):
        clock.advance(1)
        await settle()
    assert loops.alive()  # 10 s of crashing: not yet more than dead_after_s
    clock.advance(1.5)
    await settle()
    (problem,) = loops.problems()
    assert problem.startswith("loop flaky crashing for") and "restarts" in problem
    failing = False  # fixed: the next restart stays up
    clock.advance(2)
    await settle()
    assert restarts(registry, "flaky") >= 7
    assert not loops.alive()  # up again, but not yet for healthy_after_s
    clock.advance(20)
    assert loops.alive()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_backoff_starts_over_after_a_healthy_run() -> None:
    clock = SimulatedClock()
    loops, _ = loops_on(clock, healthy_after_s=60.0)
    starts: list[float] = []

    async def body() -> None:
        starts.append(clock.monotonic())
        if len(starts) == 4:
            await clock.sleep(60)  # a healthy run, then the same failure
        raise RuntimeError("boom")

    task = asyncio.create_task(loops.run("resets", body))
    await settle()
    for _ in range(140):
        clock.advance(0.5)
        await settle()
    # 0.5, 1 and 2 s before the 2nd, 3rd and 4th starts; after the healthy run 0.5 s again.
    assert starts[:5] == [0.0, 0.5, 1.5, 3.5, 64.0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_loop_that_returns_has_ended_and_ends_its_supervise() -> None:
    loops = Loops()
    stop = asyncio.Event()

    async def returns() -> None:
        return None

    await asyncio.wait_for(supervise(stop, loops.run("brief", returns), stop.wait()), 5)
    assert stop.is_set()
    assert loops.problems() == ["loop brief ended"]


async def test_a_failing_loop_does_not_take_its_supervise_down() -> None:
    loops = Loops(initial_backoff_s=0.001, max_backoff_s=0.002)
    stop = asyncio.Event()
    runs = []

    async def fails() -> None:
        runs.append(1)
        if len(runs) >= 3:
            stop.set()
        raise ValueError("one bad item")

    await asyncio.wait_for(supervise(stop, loops.run("items", fails)), 5)
    assert len(runs) >= 3  # restarted each time; stopped only by `stop`


async def test_beat_outside_a_loop_does_nothing() -> None:
    beat()
