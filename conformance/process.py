"""A provider the suite starts itself (`--provider-command`), so it can restart it.

The command is split like a shell would (no shell runs it) and started in a session
of its own, so a wrapper (a script, `uv run`) and what it starts are signalled
together. Stopping at the end is SIGTERM, then SIGKILL after a bound; the restart of
the durability checks is a SIGKILL (a crash). Its output goes to a
temporary file whose tail is shown when it will not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable

from bigfleet.conformance.target import CheckFailed

READY_POLL_S = 0.1
TAIL_BYTES = 2000


class ProviderProcess:
    def __init__(
        self,
        command: str,
        ready: Callable[[], Awaitable[object]],
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("the provider command is empty")
        self.ready = ready  # one call that succeeds once the provider answers
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the suite)

    async def start(self) -> None:
        """Start the command and return once the provider answers; CheckFailed if it never does."""
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self._process.returncode is not None:
                raise CheckFailed(
                    f"the provider exited with {self._process.returncode} before answering; "
                    f"its output ends:\n{self.tail()}"
                )
            try:
                await asyncio.wait_for(self.ready(), timeout=1.0)
                return
            except Exception:  # not up yet: refused, unavailable, timed out
                if time.monotonic() > deadline:
                    await self.stop()
                    raise CheckFailed(
                        f"the provider did not answer within {self.ready_timeout_s:g} s of "
                        f"start {self.starts}; its output ends:\n{self.tail()}"
                    ) from None
            await asyncio.sleep(READY_POLL_S)

    async def stop(self) -> None:
        """SIGTERM its session, SIGKILL after `stop_timeout_s`; returns once it is gone."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        self._signal(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self.stop_timeout_s)
        except TimeoutError:
            self._signal(process, signal.SIGKILL)
            await process.wait()
        except asyncio.CancelledError:  # Ctrl-C while waiting: leave nothing running
            self._signal(process, signal.SIGKILL)
            raise

    async def crash(self) -> None:
        """SIGKILL its session, as a power cut would: nothing gets to flush on the way out."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        self._signal(process, signal.SIGKILL)
        await process.wait()

    async def restart(self) -> None:
        """A crash and a fresh start: durable means written before answering."""
        await self.crash()
        await self.start()

    def close(self) -> None:
        self._log.close()

    def tail(self) -> str:
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, size - TAIL_BYTES))
        return self._log.read().decode(errors="replace").strip() or "(nothing)"

    @staticmethod
    def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
