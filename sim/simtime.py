"""Simulated time for asyncio: an event loop whose clock jumps instead of waiting.

The simulator runs the shard's real asyncio code (executor workers, timeouts,
sleeps). On this loop, whenever nothing is ready to run, time jumps straight
to the next timer instead of the process sleeping, so an hour of simulated
cycles takes as long as the work in them. Time is kept in whole microseconds:
float sums would drift off the cycle boundaries and make runs harder to read,
and every run of the same work visits the same instants, which keeps traces
byte-identical.

The loop does no real I/O. With nothing ready and no timer pending, nothing
could ever wake it, so it raises `Stalled` instead of hanging.
"""

from __future__ import annotations

import asyncio
import selectors

TICKS_PER_S = 1_000_000
EPOCH_S = 1_800_000_000.0  # what `time()` reads at simulated second 0


class Stalled(RuntimeError):
    """Every task waits on something only the outside world could deliver."""


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; a wait for a timer becomes a jump of the loop's clock."""

    def __init__(self, loop: SimLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)  # the loop's own wake-up pipe only
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise Stalled("the simulation is stalled: no task can run and no timer is set")
        self._loop.jump(timeout)
        return []


class SimLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._ticks = 0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._ticks / TICKS_PER_S

    def jump(self, seconds: float) -> None:
        # At least one tick: a timer due in under half a microsecond must still come due.
        self._ticks += max(1, round(seconds * TICKS_PER_S))


class LoopClock:
    """`bigfleet.clock.Clock` on a SimLoop's time, usable from outside the loop too."""

    def __init__(self, loop: SimLoop, epoch: float = EPOCH_S) -> None:
        self.loop = loop
        self.epoch = epoch

    def monotonic(self) -> float:
        return self.loop.time()

    def time(self) -> float:
        return self.epoch + self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def runner() -> tuple[asyncio.Runner, LoopClock]:
    """An asyncio.Runner on a fresh SimLoop, and the clock that reads it."""
    loop = SimLoop()
    return asyncio.Runner(loop_factory=lambda: loop), LoopClock(loop)
