"""The fake provider over mutual TLS: mutations only from the shard their fencing token names.

Real sockets, certificates from `bigfleet certs init`; the conformance suite
passes over mutual TLS presenting a shard certificate, and again on the same
provider (a later run is a newer epoch of the same shard).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from bigfleet.cli import main
from bigfleet.conformance.checks import CHECKS
from bigfleet.conformance.runner import run_suite
from bigfleet.providers_fake.app import FakeProvider, FakeProviderSettings, start
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.tls import Credentials, channel
from bigfleet.wire import provider_pb2 as pb
from bigfleet.wire import provider_pb2_grpc
from tests.support import identities

DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("certs")
    identities.issue(root, "--shard", "s0", "--shard", "s1")
    return root


@pytest.fixture
async def fake(certs: Path) -> AsyncIterator[FakeProvider]:
    """The fake, serving with the provider certificate (no BigFleet identity of its own)."""
    settings = FakeProviderSettings(
        fleet=FleetConfig().with_quick_seeds(0, 200),
        listen="127.0.0.1:0",
        tls=identities.files(certs, "provider"),
    )
    provider = await start(settings)
    try:
        yield provider
    finally:
        await provider.server.stop(grace=None)


def _address(provider: FakeProvider) -> str:
    return f"127.0.0.1:{provider.port}"


async def _speculative(provider: FakeProvider, credentials: Credentials) -> list[str]:
    async with channel(_address(provider), credentials) as ch:
        listing = await provider_pb2_grpc.CapacityProviderStub(ch).List(
            pb.ListFilter(states=[pb.MachineState.MACHINE_STATE_SPECULATIVE]), timeout=10
        )
    return [m.id for m in listing.machines]


async def _create(
    provider: FakeProvider, credentials: Credentials | None, machine_id: str, shard_id: str
) -> pb.TransitionAck:
    request = pb.CreateRequest(
        machine_id=machine_id, shard_id=shard_id, shard_epoch=1, sequence_number=1
    )
    async with channel(_address(provider), credentials) as ch:
        ack = await provider_pb2_grpc.CapacityProviderStub(ch).Create(request, timeout=10)
    assert isinstance(ack, pb.TransitionAck)
    return ack


async def test_a_mutation_is_taken_only_from_the_shard_its_token_names(
    fake: FakeProvider, certs: Path
) -> None:
    s0 = Credentials(identities.files(certs, "shard/s0"))
    machine = (await _speculative(fake, s0))[0]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _create(fake, s0, machine, "s1")
    assert caught.value.code() == DENIED
    details = str(caught.value.details())
    assert "the fencing token names shard 's1', the caller is bigfleet://shard/s0" in details
    assert fake.fleet.get(machine).state == pb.MachineState.MACHINE_STATE_SPECULATIVE

    ack = await _create(fake, s0, machine, "s0")
    assert ack.operation_id


async def test_reads_take_any_identity_and_mutations_need_a_shard(
    fake: FakeProvider, certs: Path
) -> None:
    for who in ("readonly", "admin", "cluster/cluster-a"):
        credentials = Credentials(identities.files(certs, who))
        machine = (await _speculative(fake, credentials))[0]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _create(fake, credentials, machine, "s0")
        assert caught.value.code() == DENIED
        assert f"the caller is {credentials.identity}" in str(caught.value.details())


async def test_no_client_certificate_gets_no_call_through(fake: FakeProvider) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _create(fake, None, "any", "s0")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_conformance_passes_over_mutual_tls_run_after_run(
    fake: FakeProvider, certs: Path
) -> None:
    s0 = Credentials(identities.files(certs, "shard/s0"))
    first = await run_suite(_address(fake), credentials=s0)
    assert [v.check_id for v in first] == [c.id for c in CHECKS]
    assert [v.line() for v in first if not v.passed] == []
    # The same certificate again, on machines the first run left marks on: a newer
    # epoch of the same shard, as after a restart, so no token of it is stale.
    again = await run_suite(_address(fake), credentials=s0)
    assert [v.line() for v in again if not v.passed] == []


async def test_the_conformance_command_presents_its_certificate(
    fake: FakeProvider, certs: Path
) -> None:
    argv = ["conformance", "--target", _address(fake), "--only", "fencing/*"]
    shard = await asyncio.to_thread(
        CliRunner().invoke, main, [*argv, *identities.flags(certs, "shard/s1")]
    )
    assert shard.exit_code == 0, shard.output
    assert " 0 failed" in shard.output
    # A certificate that is not a shard's: warned about, and the binding fake refuses it.
    admin = await asyncio.to_thread(
        CliRunner().invoke, main, [*argv, *identities.flags(certs, "admin")]
    )
    assert admin.exit_code == 1
    assert "is not a shard certificate (bigfleet://admin)" in admin.output
    assert "PERMISSION_DENIED" in admin.output


def test_partial_tls_flags_are_a_usage_error_naming_the_missing_flag(certs: Path) -> None:
    shard = identities.files(certs, "shard/s0")
    result = CliRunner().invoke(
        main, ["provider", "fake", "--tls-cert", str(shard.cert), "--tls-key", str(shard.key)]
    )
    assert result.exit_code == 2
    assert "--tls-ca required with --tls-cert and --tls-key" in result.output
    result = CliRunner().invoke(main, ["conformance", "--target", "x:1", "--tls-ca", str(shard.ca)])
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key required with --tls-ca" in result.output
