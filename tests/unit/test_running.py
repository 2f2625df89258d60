"""A long-running command's stop: a signal sets it, and it is bounded."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys

import pytest

from bigfleet.cli.running import until_signalled


def _signal_soon(sig: signal.Signals = signal.SIGTERM) -> None:
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_stop_and_main_winds_down(sig: signal.Signals) -> None:
    wound_down: list[bool] = []

    async def main(stop: asyncio.Event) -> None:
        _signal_soon(sig)
        await stop.wait()
        wound_down.append(True)

    until_signalled(main)
    assert wound_down == [True]


def test_work_that_outlasts_the_timeout_is_cancelled_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled: list[bool] = []

    async def provider_call() -> None:
        try:
            await asyncio.sleep(3600)  # a peer that never answers
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main(stop: asyncio.Event) -> None:
        _signal_soon()
        await asyncio.create_task(provider_call(), name="provider-call")

    with caplog.at_level(logging.WARNING):
        until_signalled(main, shutdown_timeout_s=0.2)  # returns: exit 0
    assert cancelled == [True]
    (record,) = [r for r in caplog.records if "shutdown timeout" in r.getMessage()]
    assert any(w.startswith("provider-call at") for w in record.waiting_on)  # type: ignore[attr-defined]


def test_main_s_own_failure_is_the_command_s() -> None:
    async def main(stop: asyncio.Event) -> None:
        raise RuntimeError("bad settings")

    with pytest.raises(RuntimeError, match="bad settings"):
        until_signalled(main)


def test_work_that_ignores_cancellation_ends_the_process_with_1() -> None:
    script = """
import asyncio, os, signal
from bigfleet.cli.running import until_signalled

async def main(stop):
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # refuses to stop

until_signalled(main, shutdown_timeout_s=0.2)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"ignored its cancellation" in done.stderr + done.stdout
