"""The shard under mutual TLS, over real sockets: who may open a Session, for which cluster,
what the shard presents on its dials, and the coordinator term that survives a restart."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bigfleet import pki
from bigfleet.cli import main
from bigfleet.errors import ProviderError
from bigfleet.providers_fake import app as provider_app
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.shard import app
from bigfleet.shard.runtime.ownership import Ownership
from bigfleet.shard.runtime.provider import ProviderClient
from bigfleet.shard.runtime.service import ShardService
from bigfleet.shard.settings import ShardIdentityError
from bigfleet.tls import Credentials, TLSFiles, add_port, channel, peer_identity
from bigfleet.wire import GRPC_OPTIONS, coordinator_pb2_grpc, shard_pb2, shard_pb2_grpc
from bigfleet.wire import coordinator_pb2 as cpb
from bigfleet.wire import provider_pb2 as pb
from tests.component.harness import Operator, Rig, eventually, need
from tests.support import identities

SHARD = "shard-test"  # the harness's shard id
Outcome = cpb.InstructAck.Outcome


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identities.issue(
        tmp_path_factory.mktemp("certs"),
        "--cluster", "cluster-a", "--cluster", "cluster-b",
        "--shard", SHARD, "--shard", "other-shard",
    )  # fmt: skip


@asynccontextmanager
async def tls_rig(tmp_path: Path, certs: Path, idle: int = 8) -> AsyncIterator[Rig]:
    """The harness's rig with the fake provider on mutual TLS: one identity per process,
    so a shard with a certificate dials its providers with it too."""
    provider = await provider_app.start(
        provider_app.FakeProviderSettings(
            fleet=FleetConfig().with_quick_seeds(idle, 0),
            listen="127.0.0.1:0",
            tls=identities.files(certs, "provider"),
        )
    )
    the_rig = Rig(provider.fleet, f"127.0.0.1:{provider.port}", tmp_path / "data", provider.server)
    try:
        yield the_rig
    finally:
        await the_rig.stop_shard()
        for ch in the_rig.channels:
            await ch.close()
        await the_rig.stop_provider()


def _operator(r: Rig, cluster: str, credentials: Credentials | None) -> Operator:
    """A scripted operator for `cluster` dialling the shard with `credentials`."""
    assert r.shard is not None
    ch = channel(f"127.0.0.1:{r.shard.port}", credentials, options=GRPC_OPTIONS)
    r.channels.append(ch)
    return Operator(cluster, shard_pb2_grpc.ShardStub(ch))


async def _refusal(
    port: int, credentials: grpc.ChannelCredentials | Credentials | None, cluster: str
) -> grpc.aio.AioRpcError:
    """Open a Session saying Hello for `cluster`; the error the shard ends it with."""
    if isinstance(credentials, grpc.ChannelCredentials):
        ch = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)
    else:
        ch = channel(f"127.0.0.1:{port}", credentials)
    async with ch:
        stream = shard_pb2_grpc.ShardStub(ch).Session(timeout=10)
        try:
            await stream.write(shard_pb2.OperatorMessage(hello=shard_pb2.Hello(cluster_id=cluster)))
            reply = await stream.read()
        except grpc.aio.AioRpcError as err:
            return err
        raise AssertionError(f"the shard answered {reply}")


def _rejected(shard: ShardService) -> float:
    return shard.metrics.session_identity_rejected._value.get()


def _configured_for(r: Rig, cluster: str) -> list[str]:
    return [
        m.id
        for m in r.fleet.list().machines
        if m.state == pb.MACHINE_STATE_CONFIGURED and m.cluster == cluster
    ]


async def test_a_cluster_certificate_cannot_take_over_another_clusters_stream(
    certs: Path, tmp_path: Path
) -> None:
    async with tls_rig(tmp_path, certs) as r:
        shard = await r.start_shard(tls=identities.files(certs, f"shard/{SHARD}"))
        b = _operator(r, "cluster-b", Credentials(identities.files(certs, "cluster/cluster-b")))
        b.start()
        await eventually(lambda: b.frames("ack"), what="cluster-b's Hello acknowledged")

        intruder = Credentials(identities.files(certs, "cluster/cluster-a"))
        err = await _refusal(shard.port, intruder, "cluster-b")
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        details = err.details() or ""
        assert "'cluster-b'" in details and "bigfleet://cluster/cluster-a" in details
        assert _rejected(shard) == 1

        # B's stream was never replaced: it is open and its frames are still acknowledged.
        assert shard.metrics.session_lifecycle.labels("replaced")._value.get() == 0
        assert shard.channels.connected() == ["cluster-b"]
        b.rollup(need(8))
        await eventually(
            lambda: any(f.ack.echo == "rollup" for f in b.frames("ack")),
            what="cluster-b's roll-up acknowledged after the refusal",
        )
        assert b.status is None
        await b.close()


async def test_the_right_certificate_is_served_and_bootstraps_a_machine(
    certs: Path, tmp_path: Path
) -> None:
    async with tls_rig(tmp_path, certs, idle=2) as r:
        shard = await r.start_shard(tls=identities.files(certs, f"shard/{SHARD}"))
        op = _operator(r, "cluster-a", Credentials(identities.files(certs, "cluster/cluster-a")))
        op.start()
        op.rollup(need(8))
        await eventually(lambda: len(_configured_for(r, "cluster-a")) == 1, what="1 Configured")
        assert op.frames("ack")[0].ack.echo == "hello"
        # The provider shows Configured a moment before the shard's executor counts it.
        bootstraps = shard.metrics.action_outcomes.labels("Bootstrap", "success")
        await eventually(lambda: bootstraps._value.get() == 1, what="the bootstrap counted")
        assert _rejected(shard) == 0
        await op.close()


async def test_no_client_certificate_or_another_ca_gets_no_call_through(
    certs: Path, tmp_path: Path
) -> None:
    async with tls_rig(tmp_path, certs) as r:
        shard = await r.start_shard(tls=identities.files(certs, f"shard/{SHARD}"))
        plaintext = await _refusal(shard.port, None, "cluster-a")
        assert plaintext.code() == grpc.StatusCode.UNAVAILABLE
        # Verifies the shard, presents nothing itself.
        anonymous = grpc.ssl_channel_credentials((certs / "ca.crt").read_bytes())
        unnamed = await _refusal(shard.port, anonymous, "cluster-a")
        assert unnamed.code() == grpc.StatusCode.UNAVAILABLE
        # A cluster certificate another CA signed (the client trusts ours for the server).
        foreign = tmp_path / "foreign"
        identities.issue(foreign)
        shutil.copy(certs / "ca.crt", foreign / "cluster" / "cluster-a" / "ca.crt")
        other_ca = Credentials(identities.files(foreign, "cluster/cluster-a"))
        stranger = await _refusal(shard.port, other_ca, "cluster-a")
        assert stranger.code() == grpc.StatusCode.UNAVAILABLE
        assert shard.channels.connected() == []
        assert shard.metrics.session_lifecycle.labels("installed")._value.get() == 0


async def test_shard_and_admin_certificates_cannot_open_a_session(
    certs: Path, tmp_path: Path
) -> None:
    async with tls_rig(tmp_path, certs) as r:
        shard = await r.start_shard(tls=identities.files(certs, f"shard/{SHARD}"))
        for who, identity in (
            (f"shard/{SHARD}", f"bigfleet://shard/{SHARD}"),
            ("admin", "bigfleet://admin"),
            ("readonly", "bigfleet://readonly"),
        ):
            err = await _refusal(shard.port, Credentials(identities.files(certs, who)), "cluster-a")
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, who
            assert f"Session needs bigfleet://cluster; the caller is {identity}" in (
                err.details() or ""
            )
        assert _rejected(shard) == 3
        assert shard.channels.connected() == []


async def test_the_allowlist_still_applies_to_a_matching_certificate(
    certs: Path, tmp_path: Path
) -> None:
    async with tls_rig(tmp_path, certs) as r:
        shard = await r.start_shard(
            tls=identities.files(certs, f"shard/{SHARD}"), allowed_clusters=frozenset({"cluster-b"})
        )
        err = await _refusal(
            shard.port, Credentials(identities.files(certs, "cluster/cluster-a")), "cluster-a"
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not served by this shard" in (err.details() or "")
        assert _rejected(shard) == 0  # the identity was right; the allowlist refused
        assert shard.metrics.session_rejected.labels("unknown_cluster")._value.get() == 1


async def test_a_shard_with_another_shards_certificate_refuses_to_start(
    certs: Path, tmp_path: Path
) -> None:
    for who, presented in (
        ("shard/other-shard", "bigfleet://shard/other-shard"),
        ("cluster/cluster-a", "bigfleet://cluster/cluster-a"),
        ("provider", "no bigfleet:// identity"),
    ):
        settings = app.ShardSettings(
            shard_id=SHARD, data_dir=tmp_path / "data", tls=identities.files(certs, who)
        )
        with pytest.raises(ShardIdentityError) as caught:
            ShardService(settings)
        message = str(caught.value)
        assert presented in message and f"bigfleet://shard/{SHARD}" in message, message
    assert not (tmp_path / "data" / "epoch").exists()  # refused before the epoch moved


def test_bigfleet_shard_refuses_another_shards_certificate(certs: Path, tmp_path: Path) -> None:
    tls = identities.files(certs, "shard/other-shard")
    result = CliRunner().invoke(
        main,
        [
            "shard", "--id", SHARD, "--listen", "127.0.0.1:0", "--metrics-port", "0",
            "--provider", "fake=127.0.0.1:1", "--data-dir", str(tmp_path / "data"),
            "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--tls-ca", str(tls.ca),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "bigfleet://shard/other-shard" in result.output
    assert f"bigfleet://shard/{SHARD}" in result.output


def test_partial_tls_flags_are_a_usage_error(certs: Path, tmp_path: Path) -> None:
    tls = identities.files(certs, f"shard/{SHARD}")
    base = ["shard", "--id", SHARD, "--provider", "fake=127.0.0.1:1"]
    only_cert = CliRunner().invoke(main, [*base, "--tls-cert", str(tls.cert)])
    assert only_cert.exit_code == 2, only_cert.output
    assert "--tls-key and --tls-ca required with --tls-cert" in only_cert.output
    no_ca = CliRunner().invoke(
        main, [*base, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    )
    assert no_ca.exit_code == 2, no_ca.output
    assert "--tls-ca required with --tls-cert and --tls-key" in no_ca.output


class _Coordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """Records every report and who sent it, and answers with the next scripted reply."""

    def __init__(self, replies: list[cpb.ReportAck]) -> None:
        self.replies = replies
        self.reports: list[cpb.ShardReport] = []
        self.callers: set[str] = set()

    async def ReportShard(
        self, request: cpb.ShardReport, context: grpc.aio.ServicerContext
    ) -> cpb.ReportAck:
        self.callers.add(str(peer_identity(context)))
        self.reports.append(request)
        return self.replies.pop(0) if self.replies else cpb.ReportAck(acknowledged=True)

    def acks(self) -> dict[str, int]:
        return {a.instruction_id: a.outcome for r in self.reports for a in r.instruction_acks}


def _instruction(term: int, instruction_id: str, zone: str) -> cpb.CoordinatorInstruction:
    return cpb.CoordinatorInstruction(
        coordinator_term=term,
        sequence_number=1,
        instruction_id=instruction_id,
        assign_domain=cpb.AssignDomain(
            topology_key="topology.kubernetes.io/zone", topology_value=zone
        ),
    )


async def _run_shard_with(
    settings: app.ShardSettings, coordinator: _Coordinator, until: str
) -> None:
    """`bigfleet shard`'s app until the coordinator has an ack for `until`."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(settings, stop))
    try:
        await eventually(lambda: until in coordinator.acks(), what=f"an ack for {until}")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_restarted_shard_still_refuses_a_deposed_coordinator(
    certs: Path, tmp_path: Path
) -> None:
    server = grpc.aio.server()
    coordinator = _Coordinator([])
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(coordinator, server)
    port = add_port(server, "127.0.0.1:0", Credentials(identities.files(certs, "admin")))
    await server.start()
    try:
        async with tls_rig(tmp_path, certs, idle=2) as r:
            settings = app.ShardSettings(
                shard_id=SHARD,
                listen="127.0.0.1:0",
                providers=(("fake", r.provider_address),),
                data_dir=tmp_path / "shard",
                metrics_addr="0",
                cycle_interval_s=0.2,
                min_cycle_gap_s=0.05,
                coordinator_addr=f"127.0.0.1:{port}",
                coordinator_heartbeat_s=0.05,
                tls=identities.files(certs, f"shard/{SHARD}"),
            )
            coordinator.replies = [
                cpb.ReportAck(
                    coordinator_term=2,
                    acknowledged=True,
                    instructions=[_instruction(2, "term-2", "zone-a")],
                )
            ]
            await _run_shard_with(settings, coordinator, "term-2")
            assert coordinator.acks()["term-2"] == Outcome.OUTCOME_ACCEPTED
            assert (settings.data_dir / "coordinator-term").read_text().strip() == "2"

            # Restarted on the same data dir, it meets the deposed term-1 leader first.
            coordinator.reports.clear()
            coordinator.replies = [
                cpb.ReportAck(
                    coordinator_term=1,
                    acknowledged=True,
                    instructions=[_instruction(1, "deposed", "zone-b")],
                ),
                cpb.ReportAck(
                    coordinator_term=2,
                    acknowledged=True,
                    instructions=[_instruction(1, "stale", "zone-b")],
                ),
            ]
            await _run_shard_with(settings, coordinator, "stale")
    finally:
        await server.stop(None)
    assert coordinator.acks()["stale"] == Outcome.OUTCOME_REJECTED_STALE
    assert "deposed" not in coordinator.acks()  # its reply was ignored whole
    owned = Ownership.load(settings.data_dir / "ownership.json").domains
    assert owned == {("topology.kubernetes.io/zone", "zone-a")}  # zone-b never taken
    assert coordinator.callers == {f"bigfleet://shard/{SHARD}"}  # it dialled as itself


def _reissue(certs: Path, out: Path, uri: str) -> TLSFiles:
    """A fresh certificate and key for `uri`, from the test CA."""
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    authority = pki.Authority(
        x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes()), ca_key
    )
    cert, key = authority.issue(
        pki.name(uri), validity=datetime.timedelta(days=1), ips=["127.0.0.1"], uris=[uri]
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "tls.crt").write_bytes(pki.cert_pem(cert))
    (out / "tls.key").write_bytes(pki.key_pem(key))
    return TLSFiles(out / "tls.crt", out / "tls.key", certs / "ca.crt")


async def test_the_provider_binds_mutations_to_the_shards_certificate(
    certs: Path, tmp_path: Path
) -> None:
    async with tls_rig(tmp_path, certs, idle=1) as r:
        shard = await r.start_shard(tls=identities.files(certs, f"shard/{SHARD}"))
        await eventually(lambda: shard.reconciler.ready, what="a reconcile over mutual TLS")
        # Another shard's certificate cannot spend this shard's fencing sequence.
        other = ProviderClient(
            "fake",
            r.provider_address,
            SHARD,
            shard.epoch + 1,
            credentials=Credentials(identities.files(certs, "shard/other-shard")),
        )
        with pytest.raises(ProviderError) as refused:
            await other.delete("idle-0")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        await other.close()
        # Its own certificate's mutations are taken: the bootstrap test above configures one.


async def test_a_provider_client_redials_with_a_rotated_certificate(
    certs: Path, tmp_path: Path
) -> None:
    mounted = tmp_path / "mounted"
    shutil.copytree(certs / "shard" / SHARD, mounted)
    files = TLSFiles(mounted / "tls.crt", mounted / "tls.key", mounted / "ca.crt")
    credentials = Credentials(files)
    async with tls_rig(tmp_path, certs, idle=2) as r:
        client = ProviderClient("fake", r.provider_address, SHARD, 1, credentials=credentials)
        try:
            assert len((await client.list()).machines) == 2
            before = client._channel
            fresh = _reissue(certs, tmp_path / "fresh", f"bigfleet://shard/{SHARD}")
            time.sleep(0.01)  # a later modification stamp than the first pair's
            shutil.copy(fresh.cert, files.cert)
            shutil.copy(fresh.key, files.key)
            assert len((await client.list()).machines) == 2
            assert credentials.rotations == 1 and client._channel is not before
            after = client._channel
            assert len((await client.list()).machines) == 2
            assert client._channel is after  # no rotation, no redial
            # The old channel had no call left: it closes at once rather than at the deadline.
            await eventually(lambda: not client._retiring, 5, "the old channel closed")
            assert before.get_state() == grpc.ChannelConnectivity.SHUTDOWN
        finally:
            await client.close()
