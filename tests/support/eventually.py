"""Wait for a condition under a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Await `probe` until it returns a truthy value or raises nothing; return that value.

    On timeout the last exception (or falsy value) is reported, so a failure
    says what was being waited for and why it never held.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = await probe()
        except AssertionError as err:
            last = err
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s}s; last: {last!r}")
        await asyncio.sleep(interval_s)
