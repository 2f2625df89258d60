"""The operator's redial after a session ends: at once after a stable session, backing
off while sessions keep ending soon after they open (a shard refusing every roll-up)."""

from __future__ import annotations

import asyncio

import pytest

from bigfleet.clock import SimulatedClock
from bigfleet.operators.operator.session import (
    STABLE_SESSION_S,
    OperatorSession,
    SessionEnded,
    redial_delay,
)


def test_the_delay_doubles_with_jitter_up_to_a_ceiling() -> None:
    assert redial_delay(0) == 0.1
    for n, (low, high) in {1: (0.25, 0.5), 2: (0.5, 1.0), 4: (2.0, 4.0), 50: (15.0, 30.0)}.items():
        assert all(low <= redial_delay(n) <= high for _ in range(50)), n


class RecordingClock(SimulatedClock):
    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


async def test_short_sessions_back_off_and_a_stable_one_resets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = RecordingClock()
    session = OperatorSession(
        cluster_id="c1",
        shard_address="127.0.0.1:1",
        api=None,  # type: ignore[arg-type]
        responder=None,  # type: ignore[arg-type]
        clock=clock,
    )
    lasted = iter([0.2, 0.2, 0.2, 0.2, STABLE_SESSION_S + 1, 0.2])

    async def one_session() -> None:
        try:
            raise SessionEnded(next(lasted))
        except StopIteration:
            raise asyncio.CancelledError from None

    monkeypatch.setattr(session, "_session", one_session)
    with pytest.raises(asyncio.CancelledError):
        await session.run()
    first, second, third, fourth, stable, again = clock.slept
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0 and 2.0 <= fourth <= 4.0
    assert third >= 1.0
    assert stable == 0.1  # a session that held: the next dial comes at once
    assert 0.25 <= again <= 0.5  # and the backoff starts over
