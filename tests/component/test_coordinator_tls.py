"""The coordinator over mutual TLS (ADR 0017), on real sockets with `bigfleet certs init` files.

Who may call what (shards report for themselves only, readonly reads, admin
writes), TLS to etcd with a client certificate, and the embedded store's lock
on its data directory.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from bigfleet.cli import main
from bigfleet.controlplane import find_binaries
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok
from bigfleet.coordinator.app import CoordinatorSettings, run
from bigfleet.coordinator.embedded import DataDirLocked
from bigfleet.coordinator.etcdclient import EtcdTLS
from bigfleet.tls import Credentials, channel
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc
from tests.support import identities
from tests.support.waiting import until

DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("certs")
    identities.issue(root, "--shard", "s0", "--shard", "s1")
    return root


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@dataclass
class Running:
    settings: CoordinatorSettings
    task: asyncio.Task[None]
    stop: asyncio.Event
    metrics_port: int

    @property
    def address(self) -> str:
        return self.settings.listen

    async def metric(self, line_start: str) -> float:
        """A sample from /metrics (read off the loop: the probes server runs on it)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = await asyncio.to_thread(_fetch, url)
        found = [line for line in text.splitlines() if line.startswith(line_start)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


async def _start(settings: CoordinatorSettings, ready_as: Credentials | None) -> Running:
    metrics_port = free_port()
    settings = replace(settings, metrics_addr=f"127.0.0.1:{metrics_port}")
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop))
    running = Running(settings, task, stop, metrics_port)

    async def leads() -> bool:
        if task.done():
            task.result()  # raise what ended it
        try:
            async with channel(settings.listen, ready_as) as ch:
                stub = coordinator_pb2_grpc.CoordinatorStub(ch)
                await stub.ListShardReports(pb.ListShardReportsRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
        return True

    await until(leads, "the coordinator leads and serves", timeout_s=30)
    return running


async def _stop(running: Running) -> None:
    running.stop.set()
    await asyncio.wait_for(running.task, 20)


@pytest.fixture
async def coordinator(certs: Path, tmp_path: Path) -> AsyncIterator[Running]:
    """One replica on the embedded store, mutual TLS with the admin certificate."""
    settings = CoordinatorSettings(
        replica_id="coord-tls",
        data_dir=tmp_path / "coord",
        listen=f"127.0.0.1:{free_port()}",
        tls=identities.files(certs, "admin"),
    )
    running = await _start(settings, Credentials(identities.files(certs, "admin")))
    try:
        yield running
    finally:
        await _stop(running)


async def _call(address: str, credentials: Credentials | None, rpc: str, request: object) -> object:
    async with channel(address, credentials) as ch:
        stub = coordinator_pb2_grpc.CoordinatorStub(ch)
        return await getattr(stub, rpc)(request, timeout=10)


async def _snapshot(address: str, credentials: Credentials) -> int:
    """SnapshotSave (server streaming); how many chunks came."""
    async with channel(address, credentials) as ch:
        stub = coordinator_pb2_grpc.CoordinatorStub(ch)
        return len([c async for c in stub.SnapshotSave(pb.SnapshotSaveRequest(), timeout=10)])


async def _refused(
    address: str, credentials: Credentials | None, rpc: str, request: object
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(address, credentials, rpc, request)
    return caught.value


async def test_a_shard_reports_for_itself_and_never_as_another(
    coordinator: Running, certs: Path
) -> None:
    s0 = Credentials(identities.files(certs, "shard/s0"))
    ack = await _call(coordinator.address, s0, "ReportShard", pb.ShardReport(shard_id="s0"))
    assert isinstance(ack, pb.ReportAck) and ack.acknowledged and ack.coordinator_term >= 1

    err = await _refused(coordinator.address, s0, "ReportShard", pb.ShardReport(shard_id="s1"))
    assert err.code() == DENIED
    assert "bigfleet://shard/s1" in str(err.details())
    assert "the caller is bigfleet://shard/s0" in str(err.details())
    shards = await _call(
        coordinator.address,
        Credentials(identities.files(certs, "readonly")),
        "ListShards",
        pb.ListShardsRequest(),
    )
    assert isinstance(shards, pb.ListShardsResponse)
    assert [s.shard_id for s in shards.shards] == ["s0"]  # s1 was never registered
    rejected = 'bigfleet_coordinator_identity_rejected_total{rpc="ReportShard"}'
    assert await coordinator.metric(rejected) == 1.0


async def test_admin_cannot_report_as_a_shard(coordinator: Running, certs: Path) -> None:
    admin = Credentials(identities.files(certs, "admin"))
    err = await _refused(coordinator.address, admin, "ReportShard", pb.ShardReport(shard_id="s0"))
    assert err.code() == DENIED
    assert "ReportShard needs bigfleet://shard; the caller is bigfleet://admin" in str(
        err.details()
    )
    rejected = 'bigfleet_coordinator_identity_rejected_total{rpc="ReportShard"}'
    assert await coordinator.metric(rejected) == 1.0


async def test_readonly_reads_and_only_admin_writes(coordinator: Running, certs: Path) -> None:
    s0 = Credentials(identities.files(certs, "shard/s0"))
    readonly = Credentials(identities.files(certs, "readonly"))
    admin = Credentials(identities.files(certs, "admin"))
    await _call(coordinator.address, s0, "ReportShard", pb.ShardReport(shard_id="s0"))
    assign = pb.AssignDomainRequest(
        topology_key="topology.kubernetes.io/zone", topology_value="z1", shard_id="s0"
    )

    for rpc, request in (
        ("ListShards", pb.ListShardsRequest()),
        ("ListDomainAssignments", pb.ListDomainAssignmentsRequest()),
        ("ListShardReports", pb.ListShardReportsRequest()),
        ("ListQuotas", pb.ListQuotasRequest()),
        ("ListProviders", pb.ListProvidersRequest()),
    ):
        await _call(coordinator.address, readonly, rpc, request)
    err = await _refused(coordinator.address, readonly, "AssignDomain", assign)
    assert err.code() == DENIED
    assert "AssignDomain needs bigfleet://admin; the caller is bigfleet://readonly" in str(
        err.details()
    )
    for rpc, write in (
        ("RemoveShard", pb.RemoveShardRequest(shard_id="s0")),
        ("UnassignDomain", pb.UnassignDomainRequest(topology_key="k", topology_value="v")),
    ):
        assert (await _refused(coordinator.address, readonly, rpc, write)).code() == DENIED
    # The streamed export is admin's too.
    with pytest.raises(grpc.aio.AioRpcError) as export:
        await _snapshot(coordinator.address, readonly)
    assert export.value.code() == DENIED
    assert await _snapshot(coordinator.address, admin) >= 1
    # A shard may not administer either, nor read the tables.
    assert (await _refused(coordinator.address, s0, "AssignDomain", assign)).code() == DENIED
    listing = pb.ListShardsRequest()
    assert (await _refused(coordinator.address, s0, "ListShards", listing)).code() == DENIED

    await _call(coordinator.address, admin, "AssignDomain", assign)
    found = await _call(
        coordinator.address, readonly, "ListDomainAssignments", pb.ListDomainAssignmentsRequest()
    )
    assert isinstance(found, pb.ListDomainAssignmentsResponse)
    assert [(a.topology_value, a.shard_id) for a in found.assignments] == [("z1", "s0")]
    rejected = 'bigfleet_coordinator_identity_rejected_total{rpc="AssignDomain"}'
    assert await coordinator.metric(rejected) == 2.0


async def test_no_client_certificate_gets_no_call_through(
    coordinator: Running, certs: Path
) -> None:
    plain = await _refused(coordinator.address, None, "ListShards", pb.ListShardsRequest())
    assert plain.code() == grpc.StatusCode.UNAVAILABLE
    # TLS that trusts the server but presents no certificate of its own.
    anonymous = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes())
    async with grpc.aio.secure_channel(coordinator.address, anonymous) as ch:
        stub = coordinator_pb2_grpc.CoordinatorStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListShards(pb.ListShardsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_ctl_dials_with_its_certificate(coordinator: Running, certs: Path) -> None:
    runner = CliRunner()

    def ctl(who: str, *args: str) -> tuple[int, str]:
        argv = ["ctl", "--coordinator", coordinator.address, *identities.flags(certs, who), *args]
        result = runner.invoke(main, argv)
        return result.exit_code, result.output

    s0 = Credentials(identities.files(certs, "shard/s0"))
    await _call(coordinator.address, s0, "ReportShard", pb.ShardReport(shard_id="s0"))
    code, out = await asyncio.to_thread(ctl, "readonly", "list-shards")
    assert code == 0 and "s0" in out, out
    assign = ("assign-domain", "--key", "zone", "--value", "z9", "--shard", "s0")
    code, out = await asyncio.to_thread(ctl, "readonly", *assign)
    assert code == 1 and "PERMISSION_DENIED" in out, out
    code, out = await asyncio.to_thread(ctl, "admin", *assign)
    assert code == 0 and "zone=z9 -> s0" in out, out


def test_partial_tls_flags_are_a_usage_error_naming_the_missing_flag(certs: Path) -> None:
    admin = identities.files(certs, "admin")
    runner = CliRunner()
    result = runner.invoke(
        main, ["coordinator", "--store", "embedded", "--tls-cert", str(admin.cert)]
    )
    assert result.exit_code == 2
    assert "--tls-key and --tls-ca required with --tls-cert" in result.output
    result = runner.invoke(
        main, ["coordinator", "--etcd", "127.0.0.1:2379", "--etcd-cacert", str(admin.ca)]
    )
    assert result.exit_code == 2
    assert "--etcd-cert and --etcd-key required with --etcd-cacert" in result.output
    etcd_tls = ["--etcd-cacert", str(admin.ca), "--etcd-cert", str(admin.cert)]
    etcd_tls += ["--etcd-key", str(admin.key)]
    result = runner.invoke(main, ["coordinator", "--store", "embedded", *etcd_tls])
    assert result.exit_code == 2
    assert "need --store etcd" in result.output


# -- the embedded store's lock ---------------------------------------------------------------


async def test_a_second_replica_on_one_data_directory_refuses_to_start(
    coordinator: Running, certs: Path
) -> None:
    s0 = Credentials(identities.files(certs, "shard/s0"))
    first = await _call(coordinator.address, s0, "ReportShard", pb.ShardReport(shard_id="s0"))
    assert isinstance(first, pb.ReportAck)
    state = coordinator.settings.data_dir / "coordinator-state.json"
    term = json.loads(state.read_text())["term"]

    # In this process: the second replica's run ends at once, naming the directory.
    second = replace(coordinator.settings, listen=f"127.0.0.1:{free_port()}", replica_id="two")
    with pytest.raises(DataDirLocked, match=str(coordinator.settings.data_dir)):
        await asyncio.wait_for(run(second, asyncio.Event()), 10)
    # As a process: `bigfleet coordinator` exits 1 with the same message.
    argv = [sys.executable, "-m", "bigfleet.cli", "coordinator", "--store", "embedded"]
    argv += ["--data-dir", str(coordinator.settings.data_dir), "--listen", second.listen]
    argv += ["--metrics-port", "0", *identities.flags(certs, "admin")]
    proc = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert f"holds the embedded store in {coordinator.settings.data_dir}" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr

    # The first keeps serving, under the term it started with.
    again = await _call(coordinator.address, s0, "ReportShard", pb.ShardReport(shard_id="s0"))
    assert isinstance(again, pb.ReportAck)
    assert again.acknowledged and again.coordinator_term == first.coordinator_term == term
    assert json.loads(state.read_text())["term"] == term


async def test_the_lock_is_released_when_the_replica_stops(certs: Path, tmp_path: Path) -> None:
    settings = CoordinatorSettings(
        replica_id="plain", data_dir=tmp_path / "coord", listen=f"127.0.0.1:{free_port()}"
    )
    first = await _start(settings, None)  # plaintext: exactly as before TLS
    ack = await _call(first.address, None, "ReportShard", pb.ShardReport(shard_id="anyone"))
    assert isinstance(ack, pb.ReportAck) and ack.acknowledged
    await _stop(first)
    restarted = await _start(replace(settings, listen=f"127.0.0.1:{free_port()}"), None)
    try:
        ack2 = await _call(restarted.address, None, "ReportShard", pb.ShardReport(shard_id="x"))
        assert isinstance(ack2, pb.ReportAck)
        assert ack2.coordinator_term == ack.coordinator_term + 1  # the term only grows
    finally:
        await _stop(restarted)


# -- TLS to etcd -----------------------------------------------------------------------------


@pytest.fixture
def tls_etcd(certs: Path, tmp_path: Path) -> Iterator[tuple[int, ManagedProcess]]:
    """One etcd member that serves clients over TLS and requires a client certificate."""
    client_port, peer_port = free_port(), free_port()
    server = identities.files(
        certs, "provider"
    )  # DNS localhost, IP 127.0.0.1, no BigFleet identity
    member = ManagedProcess(
        "etcd-tls",
        [
            str(find_binaries() / "etcd"),
            "--name=m0",
            f"--data-dir={tmp_path / 'etcd'}",
            f"--listen-client-urls=https://127.0.0.1:{client_port}",
            f"--advertise-client-urls=https://127.0.0.1:{client_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=m0=http://127.0.0.1:{peer_port}",
            "--initial-cluster-state=new",
            f"--cert-file={server.cert}",
            f"--key-file={server.key}",
            f"--trusted-ca-file={server.ca}",
            "--client-cert-auth",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        tmp_path / "etcd.log",
    )
    admin = identities.files(certs, "admin")
    context = ssl.create_default_context(cafile=str(admin.ca))
    context.load_cert_chain(str(admin.cert), str(admin.key))
    member.start()
    try:
        url = f"https://127.0.0.1:{client_port}/health"
        member.wait_ready(functools.partial(http_ok, url, context), 60)
        yield client_port, member
    finally:
        member.stop()


async def test_the_coordinator_leads_over_etcd_with_tls(
    tls_etcd: tuple[int, ManagedProcess], certs: Path
) -> None:
    port, _ = tls_etcd
    admin = identities.files(certs, "admin")
    settings = CoordinatorSettings(
        replica_id="coord-etcd-tls",
        etcd=(("127.0.0.1", port),),
        listen=f"127.0.0.1:{free_port()}",
        tls=admin,
        etcd_tls=EtcdTLS(ca=admin.ca, cert=admin.cert, key=admin.key),
    )
    running = await _start(settings, Credentials(admin))
    try:
        s0 = Credentials(identities.files(certs, "shard/s0"))
        ack = await _call(running.address, s0, "ReportShard", pb.ShardReport(shard_id="s0"))
        assert isinstance(ack, pb.ReportAck)
        assert ack.acknowledged and ack.coordinator_term > 0  # the election key's revision
        assert await running.metric("bigfleet_coordinator_raft_term") == ack.coordinator_term
        shards = await _call(
            running.address, Credentials(admin), "ListShards", pb.ListShardsRequest()
        )
        assert isinstance(shards, pb.ListShardsResponse)
        assert [s.shard_id for s in shards.shards] == ["s0"]  # read back from etcd
    finally:
        await _stop(running)
