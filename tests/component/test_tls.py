"""Mutual TLS in the kernel, over real sockets: who gets in, with which identity, and rotation."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bigfleet import pki
from bigfleet.errors import IdentityRejected
from bigfleet.tls import (
    ADMIN,
    Credentials,
    Identity,
    RequireIdentity,
    Role,
    TLSFiles,
    add_port,
    channel,
    peer_identity,
)
from bigfleet.wire import shard_pb2, shard_pb2_grpc
from tests.support import identities


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identities.issue(
        tmp_path_factory.mktemp("certs"), "--cluster", "a", "--cluster", "b", "--shard", "s0"
    )


class _Echo(shard_pb2_grpc.ShardServicer):
    """Answers every frame with an ack naming the caller's identity."""

    async def Session(
        self, requests: AsyncIterator[shard_pb2.OperatorMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[shard_pb2.ShardMessage]:
        try:
            identity = peer_identity(context)
        except IdentityRejected as err:
            await context.abort(err.code, str(err))
        async for _ in requests:
            yield shard_pb2.ShardMessage(ack=shard_pb2.Acknowledgement(echo=str(identity)))


async def _serve(files: TLSFiles, roles: set[Role]) -> tuple[grpc.aio.Server, int, Credentials]:
    rejected: list[str] = []
    server = grpc.aio.server(
        interceptors=[RequireIdentity(lambda _method: roles, lambda m, why: rejected.append(why))]
    )
    shard_pb2_grpc.add_ShardServicer_to_server(_Echo(), server)
    credentials = Credentials(files)
    port = add_port(server, "127.0.0.1:0", credentials)
    await server.start()
    return server, port, credentials


async def _echo(port: int, credentials: Credentials | None) -> str:
    async with channel(f"127.0.0.1:{port}", credentials) as ch:
        stream = shard_pb2_grpc.ShardStub(ch).Session(timeout=10)
        await stream.write(shard_pb2.OperatorMessage(hello=shard_pb2.Hello(cluster_id="x")))
        reply = await stream.read()
        await stream.done_writing()
        assert isinstance(reply, shard_pb2.ShardMessage)
        return reply.ack.echo


async def test_the_caller_identity_reaches_the_handler(certs: Path) -> None:
    server, port, _ = await _serve(identities.files(certs, "shard/s0"), {Role.CLUSTER})
    try:
        assert (
            await _echo(port, Credentials(identities.files(certs, "cluster/a")))
            == "bigfleet://cluster/a"
        )
    finally:
        await server.stop(0)


async def test_a_role_the_method_does_not_take_is_refused(certs: Path) -> None:
    server, port, _ = await _serve(identities.files(certs, "shard/s0"), {Role.ADMIN})
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _echo(port, Credentials(identities.files(certs, "readonly")))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs bigfleet://admin; the caller is bigfleet://readonly" in str(
            caught.value.details()
        )
        assert await _echo(port, Credentials(identities.files(certs, "admin"))) == str(ADMIN)
    finally:
        await server.stop(0)


async def test_no_certificate_and_a_foreign_ca_never_get_a_call_through(
    certs: Path, tmp_path: Path
) -> None:
    server, port, _ = await _serve(identities.files(certs, "shard/s0"), set(Role))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await _echo(port, None)
        assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
        # A client whose certificate another CA signed (it trusts ours for the server).
        foreign = tmp_path / "foreign"
        identities.issue(foreign)
        shutil.copy(certs / "ca.crt", foreign / "cluster" / "cluster-a" / "ca.crt")
        with pytest.raises(grpc.aio.AioRpcError) as other_ca:
            await _echo(port, Credentials(identities.files(foreign, "cluster/cluster-a")))
        assert other_ca.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


def _leaf(certs: Path, out: Path, uris: list[str]) -> TLSFiles:
    """A certificate from the test CA with the URI SANs given (none, or several)."""
    ca_cert = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    authority = pki.Authority(ca_cert, ca_key)
    cert, key = authority.issue(
        pki.name("odd"), validity=datetime.timedelta(days=1), ips=["127.0.0.1"], uris=uris
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "tls.crt").write_bytes(pki.cert_pem(cert))
    (out / "tls.key").write_bytes(pki.key_pem(key))
    shutil.copy(certs / "ca.crt", out / "ca.crt")
    return TLSFiles(out / "tls.crt", out / "tls.key", out / "ca.crt")


async def test_a_certificate_without_exactly_one_identity_is_refused(
    certs: Path, tmp_path: Path
) -> None:
    server, port, _ = await _serve(identities.files(certs, "shard/s0"), set(Role))
    try:
        none = _leaf(certs, tmp_path / "none", [])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _echo(port, Credentials(none))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "exactly one bigfleet:// URI SAN, it has 0" in str(caught.value.details())
        two = _leaf(certs, tmp_path / "two", ["bigfleet://cluster/a", "bigfleet://admin"])
        with pytest.raises(ValueError, match="found 2"):
            Credentials(two)  # our own processes refuse to start with one
        # Another implementation's client could still present one: the server refuses it.
        raw = grpc.ssl_channel_credentials(
            two.ca.read_bytes(), two.key.read_bytes(), two.cert.read_bytes()
        )
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", raw) as ch:
            stream = shard_pb2_grpc.ShardStub(ch).Session(timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as both:
                await stream.write(shard_pb2.OperatorMessage(hello=shard_pb2.Hello(cluster_id="a")))
                await stream.read()
        assert both.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "it has 2" in str(both.value.details())
    finally:
        await server.stop(0)


def _served_serial(port: int, client: TLSFiles) -> int:
    context = ssl.create_default_context(cafile=str(client.ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@dataclass
class _Served:
    """A server on a copy of shard s0's certificate files, which a test may rewrite."""

    files: TLSFiles
    port: int
    credentials: Credentials
    client: TLSFiles  # cluster a's, to handshake with
    before: int  # the serial served at first

    async def serial(self) -> int:
        return await asyncio.to_thread(_served_serial, self.port, self.client)

    def rotate_to(self, new: TLSFiles, key_too: bool = True) -> None:
        shutil.copy(new.cert, self.files.cert)
        if key_too:
            shutil.copy(new.key, self.files.key)


@asynccontextmanager
async def _rotatable(certs: Path, tmp_path: Path) -> AsyncIterator[_Served]:
    served = tmp_path / "served"
    shutil.copytree(certs / "shard" / "s0", served)
    files = TLSFiles(served / "tls.crt", served / "tls.key", served / "ca.crt")
    server, port, credentials = await _serve(files, {Role.CLUSTER})
    client = identities.files(certs, "cluster/a")
    try:
        before = await asyncio.to_thread(_served_serial, port, client)
        yield _Served(files, port, credentials, client, before)
    finally:
        await server.stop(0)


async def test_rotation_reaches_the_next_handshake_and_spares_open_streams(
    certs: Path, tmp_path: Path
) -> None:
    async with (
        _rotatable(certs, tmp_path) as served,
        channel(f"127.0.0.1:{served.port}", Credentials(served.client)) as ch,
    ):
        stream = shard_pb2_grpc.ShardStub(ch).Session(timeout=20)
        hello = shard_pb2.OperatorMessage(hello=shard_pb2.Hello(cluster_id="a"))
        await stream.write(hello)
        assert (await stream.read()).ack.echo == "bigfleet://cluster/a"

        # Half a rotation: the new certificate without its key keeps the old pair.
        fresh = _leaf(certs, tmp_path / "fresh", ["bigfleet://shard/s0"])
        served.rotate_to(fresh, key_too=False)
        assert await served.serial() == served.before
        assert served.credentials.rotations == 0
        served.rotate_to(fresh)
        after = await served.serial()
        assert after != served.before
        assert after == x509.load_pem_x509_certificate(fresh.cert.read_bytes()).serial_number
        assert served.credentials.rotations == 1

        await stream.write(hello)  # the stream opened before the rotation still flows
        assert (await stream.read()).ack.echo == "bigfleet://cluster/a"
        await stream.done_writing()


async def test_the_server_rotates_even_when_a_client_of_the_process_noticed_first(
    certs: Path, tmp_path: Path
) -> None:
    # A shard serves Sessions and dials providers with one Credentials: its provider
    # client usually sees the new files before the server's next handshake does.
    async with _rotatable(certs, tmp_path) as served:
        fresh = _leaf(certs, tmp_path / "fresh", ["bigfleet://shard/s0"])
        served.rotate_to(fresh)
        served.credentials.channel()  # the process's own dial takes the rotation first
        assert served.credentials.rotations == 1
        after = await served.serial()
        assert after != served.before
        assert after == x509.load_pem_x509_certificate(fresh.cert.read_bytes()).serial_number


async def test_a_rotation_to_another_identity_is_not_taken(certs: Path, tmp_path: Path) -> None:
    async with _rotatable(certs, tmp_path) as served:
        for uris in (["bigfleet://shard/s1"], ["bigfleet://shard/s0", "bigfleet://admin"]):
            served.rotate_to(_leaf(certs, tmp_path / "other", uris))
            assert await served.serial() == served.before
            assert served.credentials.rotations == 0
            assert served.credentials.identity == Identity.shard("s0")


def test_partial_flags_name_what_is_missing(tmp_path: Path) -> None:
    assert TLSFiles.from_flags(None, None, None) is None
    with pytest.raises(ValueError, match="--tls-key and --tls-ca required with --tls-cert"):
        TLSFiles.from_flags(tmp_path / "c", None, None)
    with pytest.raises(ValueError, match="--tls-ca required with --tls-cert and --tls-key"):
        TLSFiles.from_flags(tmp_path / "c", tmp_path / "k", None)


@pytest.mark.parametrize(
    ("uri", "identity"),
    [
        ("bigfleet://cluster/c1", Identity.cluster("c1")),
        ("bigfleet://shard/shard-0", Identity.shard("shard-0")),
        ("bigfleet://admin", ADMIN),
    ],
)
def test_identities_parse(uri: str, identity: Identity) -> None:
    assert Identity.parse(uri) == identity and identity.uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://x/y",
        "bigfleet://cluster",
        "bigfleet://admin/x",
        "bigfleet://root",
        "bigfleet://shard/a/b",
    ],
)
def test_malformed_identities_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        Identity.parse(uri)


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self.auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def test_a_tls_12_connection_serves_no_call() -> None:
    # gRPC Python cannot set a minimum TLS version on a server, so the check is per call.
    tls12 = _Context(
        {
            "transport_security_type": [b"ssl"],
            "ssl_tls_version": [b"TLSv1.2"],
            "peer_uri": [b"bigfleet://admin"],
        }
    )
    with pytest.raises(IdentityRejected, match=r"TLS 1\.3 required"):
        peer_identity(tls12)  # type: ignore[arg-type]
    plaintext = {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}
    assert peer_identity(_Context(plaintext)) is None  # type: ignore[arg-type]
    with pytest.raises(IdentityRejected):  # no transport information at all: fail closed
        peer_identity(_Context({}))  # type: ignore[arg-type]


async def test_plaintext_servers_see_no_identity() -> None:
    seen: list[object] = []

    class Probe(shard_pb2_grpc.ShardServicer):
        async def Session(
            self,
            requests: AsyncIterator[shard_pb2.OperatorMessage],
            context: grpc.aio.ServicerContext,
        ) -> AsyncIterator[shard_pb2.ShardMessage]:
            seen.append(peer_identity(context))
            async for _ in requests:
                yield shard_pb2.ShardMessage(ack=shard_pb2.Acknowledgement(echo="ok"))

    server = grpc.aio.server()
    shard_pb2_grpc.add_ShardServicer_to_server(Probe(), server)
    port = add_port(server, "127.0.0.1:0", None)
    await server.start()
    try:
        assert await _echo(port, None) == "ok"
        assert seen == [None]
    finally:
        await server.stop(0)
