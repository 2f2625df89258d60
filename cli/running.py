"""Running a long-lived command until SIGINT or SIGTERM, and bounding its stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0  # below Kubernetes' default termination grace of 30 s
# After the stop's time is up: how long cancelled work gets to unwind before the process
# leaves without it.
CANCEL_WAIT_S = 2.0


def until_signalled(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, object]],
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
) -> None:
    """Run `main(stop)` on a fresh event loop; SIGINT and SIGTERM set `stop`.

    Once `stop` is set (by a signal, or by `main` itself when it winds down), `main` has
    `shutdown_timeout_s` to return. Past that it is cancelled, which ends whatever call
    it still waits on (a provider that does not answer, a stream that does not close);
    the process then exits 0, having logged what took too long. Work that ignores the
    cancellation too ends the process with 1 after CANCEL_WAIT_S.
    """

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        work = asyncio.ensure_future(main(stop))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not work.done():
            await asyncio.wait({work}, timeout=shutdown_timeout_s)
        if work.done():
            work.result()  # main's own failure, if any, is the command's
            return
        log.warning(
            "still stopping when the shutdown timeout ran out; cancelling what is left",
            extra={"shutdown_timeout_s": shutdown_timeout_s, "waiting_on": _waiting_on()},
        )
        work.cancel()
        await asyncio.wait({work}, timeout=CANCEL_WAIT_S)
        if not work.done():
            log.error("work ignored its cancellation; exiting without it")
            logging.shutdown()
            os._exit(1)
        with contextlib.suppress(asyncio.CancelledError):
            work.result()

    asyncio.run(run())


def _waiting_on() -> list[str]:
    """The tasks still running, by name and where each waits: what held the stop up."""
    current = asyncio.current_task()
    return sorted(
        f"{task.get_name()} at {task.get_coro()!r}"[:200]
        for task in asyncio.all_tasks()
        if task is not current
    )[:20]
