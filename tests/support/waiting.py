"""Waiting on a condition under a deadline, never on a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(probe: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    """Call `probe` (sync, or returning an awaitable) until its result is truthy; return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s}s")
        await asyncio.sleep(0.1)
