"""Running a process's long-lived coroutines together, and keeping each loop alive.

Two tools, used together by every component:

- `supervise(stop, *coroutines)` composes the parts of a process (each
  component's `app.run`, and `all-in-one` over several apps): they share one
  stop event, one of them ending on its own stops the rest (a part that returns
  or raises has failed at its job), and an error surfaces instead of leaving a
  half-alive process.
- `Loops.run(name, body)` keeps one long-lived loop going inside a part: an
  unexpected exception is logged with its traceback, counted in
  `bigfleet_loop_restarts_total{loop}`, and the loop started again after a
  jittered exponential backoff (reset once it has run healthily for a while).
  Cancellation always goes through. A loop calls `beat()` once per iteration;
  `Loops.problems()` names every loop that is dead (ended, or crashing for
  longer than `dead_after_s`) or stuck (no beat within its stated maximum
  period), which is what a component's /healthz answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from bigfleet.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)


async def supervise(
    stop: asyncio.Event, *coroutines: Coroutine[Any, Any, object], grace: float = 0.0
) -> None:
    """Run `coroutines` in a TaskGroup until `stop` is set or one of them ends.

    Then `stop` is set for everyone; coroutines that watch it get `grace` seconds
    to finish on their own before what is left is cancelled. An exception raised
    by any coroutine propagates (as an ExceptionGroup) once the rest have ended.
    A loop run through `Loops.run` never raises (it restarts), so only a part's
    own failure ends the process this way.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
            stopping = group.create_task(stop.wait())
            await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            if grace > 0 and tasks:
                await asyncio.wait(tasks, timeout=grace)
            for task in tasks:
                task.cancel()
    finally:
        stop.set()


# -- restartable loops ---------------------------------------------------------------------------

MaxPeriod = float | Callable[[], float] | None


@dataclass
class LoopState:
    """One running loop as liveness sees it (times on the Loops' clock, monotonic)."""

    name: str
    clock: Clock
    max_period: MaxPeriod  # longest silence between beats; None: not watched for stuck
    started_at: float  # when the current run (or backoff) began
    last_beat: float
    restarts: int = 0
    crashing_since: float | None = None  # first crash not followed by a healthy run
    in_backoff: bool = False
    ended: bool = False

    def period(self) -> float | None:
        return self.max_period() if callable(self.max_period) else self.max_period


_current: contextvars.ContextVar[LoopState | None] = contextvars.ContextVar(
    "bigfleet_loop", default=None
)


def backoff(
    attempt: int,
    initial_s: float,
    max_s: float,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Jittered exponential backoff: the ceiling min(max_s, initial_s * 2**attempt), scaled
    by a factor in [0.5, 1) so that many waiters do not wake together."""
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt, 62))
    return ceiling * (0.5 + jitter() / 2)


def beat() -> None:
    """Tell the supervisor the loop running in this task made progress (a no-op outside one)."""
    state = _current.get()
    if state is not None:
        state.last_beat = state.clock.monotonic()


class Loops:
    """The restartable loops of one component, and the liveness they add up to.

    `registry` receives `bigfleet_loop_restarts_total{loop}` (one per component's
    registry); without one the counter lives in a private registry. Backoff before
    restart n (counted from the last healthy run) is min(max_backoff_s,
    initial_backoff_s * 2**n), scaled by a random factor in [0.5, 1).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Clock = REAL_CLOCK,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
        dead_after_s: float = 120.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.clock = clock
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.healthy_after_s = healthy_after_s  # a run this long resets backoff and crash streak
        self.dead_after_s = dead_after_s  # crashing this long without a healthy run: dead
        self.jitter = jitter  # in [0, 1)
        self.running: list[LoopState] = []
        self.restarts = Counter(
            "bigfleet_loop_restarts_total",
            "Unexpected exceptions that restarted a supervised loop (logged with a traceback).",
            ["loop"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def backoff(self, attempt: int) -> float:
        """Seconds before restart number `attempt` (0 for the first after a healthy run)."""
        return backoff(attempt, self.initial_backoff_s, self.max_backoff_s, self.jitter)

    async def run(
        self,
        name: str,
        body: Callable[[], Awaitable[object]],
        *,
        max_period_s: MaxPeriod = None,
    ) -> None:
        """Run `body()` until cancelled, starting it again after any unexpected exception.

        `max_period_s` (seconds, or a function giving them now) is the longest the loop may
        go without calling `beat()` before liveness calls it stuck; None for a loop that
        waits on others for unbounded stretches (a queue, an election). A body that returns
        has ended: that is logged and reported dead, and `run` returns so a `supervise`
        around it stops the process.
        """
        now = self.clock.monotonic()
        state = LoopState(name, self.clock, max_period_s, started_at=now, last_beat=now)
        self.running.append(state)
        # This task's context: `beat()` in the body finds the loop (reset on the way out, for
        # a caller that awaited `run` in its own task).
        token = _current.set(state)
        self.restarts.labels(name)  # the series exists (at 0) from the start
        attempt = 0
        try:
            while True:
                state.started_at = state.last_beat = self.clock.monotonic()
                state.in_backoff = False
                try:
                    await body()
                except Exception:  # CancelledError is a BaseException: it goes through
                    ran = self.clock.monotonic() - state.started_at
                    if ran >= self.healthy_after_s:
                        attempt, state.crashing_since = 0, None
                    state.restarts += 1
                    self.restarts.labels(name).inc()
                    delay = self.backoff(attempt)
                    attempt += 1
                    log.exception(
                        "loop failed; restarting",
                        extra={"loop": name, "ran_s": round(ran, 3), "backoff_s": round(delay, 3)},
                    )
                    now = self.clock.monotonic()
                    if state.crashing_since is None:
                        state.crashing_since = now
                    state.in_backoff, state.started_at = True, now
                    await self.clock.sleep(delay)
                    continue
                state.ended = True
                log.error("loop ended on its own", extra={"loop": name})
                return
        except BaseException:
            self.running.remove(state)  # cancelled (or stopping): no longer watched
            raise
        finally:
            _current.reset(token)

    def problems(self) -> list[str]:
        """Why liveness fails, one line per dead or stuck loop; empty while all are alive."""
        now = self.clock.monotonic()
        found = []
        for s in self.running:
            if s.ended:
                found.append(f"loop {s.name} ended")
                continue
            healthy = not s.in_backoff and now - s.started_at >= self.healthy_after_s
            if healthy:
                s.crashing_since = None  # it has run healthily since its last crash
            if s.crashing_since is not None and now - s.crashing_since > self.dead_after_s:
                found.append(
                    f"loop {s.name} crashing for {now - s.crashing_since:.0f}s "
                    f"({s.restarts} restarts)"
                )
                continue
            period = s.period()
            if period is not None and not s.in_backoff and now - s.last_beat > period:
                found.append(
                    f"loop {s.name} stuck: no progress for {now - s.last_beat:.0f}s "
                    f"(at most {period:.0f}s)"
                )
        return found

    def alive(self) -> bool:
        return not self.problems()
