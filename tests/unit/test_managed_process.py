"""A control-plane process dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's pdeathsig")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_started_process_is_terminated_when_its_starter_is_killed(tmp_path: Path) -> None:
    starter = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from bigfleet.controlplane.process import ManagedProcess
        p = ManagedProcess("sleeper", ["sleep", "300"], Path({str(tmp_path / "log")!r}))
        p.start()
        print(p._proc.pid, flush=True)
        time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    # The signal is set by the launcher just before it execs the command: kill the
    # starter only once the command runs, or the kill can win that race.
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}/comm").read_text().strip() != "sleep":
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)  # no teardown runs
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the started process outlived its starter"
