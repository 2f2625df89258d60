"""The durability category: the suite starts the fake itself, restarts it and compares.

The fake runs as a real process (`python -m bigfleet.cli provider fake`), as any
provider under `--provider-command` would.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from pathlib import Path

import grpc
import pytest

from bigfleet.conformance.checks import CHECKS
from bigfleet.conformance.durability import CHECKS as DURABILITY
from bigfleet.conformance.runner import run_suite
from bigfleet.conformance.target import CheckFailed
from bigfleet.providers_fake.app import FakeProviderSettings, start
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.wire import provider_pb2 as pb
from bigfleet.wire import provider_pb2_grpc


def _free_address() -> str:
    # The restarted provider must come back on the same address, so port 0 will not do.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _fake_command(address: str, *extra: str) -> str:
    argv = [sys.executable, "-m", "bigfleet.cli", "provider", "fake", "--listen", address]
    return shlex.join([*argv, "--speculative", "80", *extra])


async def test_the_fake_with_a_state_file_passes_everything_across_a_restart(
    tmp_path: Path,
) -> None:
    address, state = _free_address(), tmp_path / "fake.json"
    verdicts = await run_suite(
        address, provider_command=_fake_command(address, "--state", str(state))
    )
    assert [v.check_id for v in verdicts] == [c.id for c in CHECKS]
    assert [v.line() for v in verdicts if not v.held] == []
    assert state.is_file()


async def test_the_fake_without_a_state_file_fails_every_durability_check() -> None:
    address = _free_address()
    verdicts = await run_suite(
        address, only="durability/*", provider_command=_fake_command(address)
    )
    assert [v.check_id for v in verdicts] == [c.id for c in DURABILITY]
    assert [v.check_id for v in verdicts if v.failure] == [c.id for c in DURABILITY]
    fences = next(v for v in verdicts if v.check_id == "durability/fences")
    assert "got OK after the restart" in (fences.failure or "")


async def test_a_provider_that_never_answers_is_reported_with_its_output(tmp_path: Path) -> None:
    address, state = _free_address(), tmp_path / "corrupt.json"
    state.write_text("{")
    command = _fake_command(address, "--state", str(state))
    with pytest.raises(CheckFailed, match=r"exited with 1 before answering[\s\S]*corrupt\.json"):
        await run_suite(address, provider_command=command)


async def test_a_provider_still_silent_at_the_deadline_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # Serves nothing; says who it is so the test can see it is gone.
    sleeper = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    command = shlex.join([sys.executable, "-c", sleeper, str(pid_file)])
    started = time.monotonic()
    with pytest.raises(CheckFailed, match="did not answer within 2 s"):
        await run_suite(_free_address(), provider_command=command, ready_timeout_s=2)
    assert time.monotonic() - started < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_an_acknowledged_mutation_is_already_on_disk(tmp_path: Path) -> None:
    state = tmp_path / "fake.json"
    settings = FakeProviderSettings(
        fleet=FleetConfig().with_quick_seeds(0, 2), listen="127.0.0.1:0", state=state
    )
    provider = await start(settings)
    try:
        async with grpc.aio.insecure_channel(provider.address) as channel:
            stub = provider_pb2_grpc.CapacityProviderStub(channel)
            ack = await stub.Create(
                pb.CreateRequest(
                    machine_id="spec-1", shard_id="s", shard_epoch=1, sequence_number=7
                )
            )
            # Read at once, no flush of our own: the answer waited for the write.
            on_disk = state.read_text()
            assert ack.operation_id in on_disk
            assert '"sequence":7' in on_disk
            missing = pb.CreateRequest(
                machine_id="gone", shard_id="z", shard_epoch=3, sequence_number=3
            )
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Create(missing)
            assert '"shard_id":"z"' in state.read_text()  # a refused call's mark, too
    finally:
        await provider.server.stop(grace=None)
