"""Running a process's long-lived coroutines together until it is told to stop.

Every long-lived process (each component's `app.run`, and `all-in-one` over
several apps) runs its loops through `supervise`: they share one stop event,
one of them ending on its own stops the rest (a loop that returns or raises has
failed at its job), and an error surfaces instead of leaving a half-alive process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def supervise(
    stop: asyncio.Event, *coroutines: Coroutine[Any, Any, object], grace: float = 0.0
) -> None:
    """Run `coroutines` in a TaskGroup until `stop` is set or one of them ends.

    Then `stop` is set for everyone; coroutines that watch it get `grace` seconds
    to finish on their own before what is left is cancelled. An exception raised
    by any coroutine propagates (as an ExceptionGroup) once the rest have ended.
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
