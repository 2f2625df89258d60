"""The fake provider stops cleanly: SIGTERM or Ctrl-C ends it with 0, and a node joiner
leaves no folder of node keys behind."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from bigfleet.controlplane.process import free_port
from tests.support.processes import bigfleet, stop
from tests.support.waiting import until


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stopped_joiner_leaves_no_node_keys(tmp_path: Path, sig: signal.Signals) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    args = ["provider", "fake", "--listen", f"127.0.0.1:{port}", "--join-nodes"]
    with bigfleet(args, tmp_path / "log", {**os.environ, "TMPDIR": str(temp)}) as process:
        await until(lambda: _listening(port), "fake provider serving")
        # The joiner makes its folder as it starts, which may come just after the port.
        # Wait for that folder by name: other libraries may briefly put their own
        # temporary files here while the process starts.
        await until(
            lambda: any(p.name.startswith("bigfleet-fake-nodes") for p in temp.iterdir()),
            "the joiner's folder of node keys",
        )
        code = stop(process, sig)
    assert code == 0, (tmp_path / "log").read_text()[-3000:]
    assert list(temp.iterdir()) == []
