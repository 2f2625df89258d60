"""Transport security for every gRPC edge: plaintext, or mutual TLS with bigfleet:// identities.

One process has one identity: the same certificate serves its servers and its
dials. With all three of --tls-cert, --tls-key and --tls-ca every server
requires a client certificate signed by the CA and every client verifies the
server; with none the transport is plaintext and identity checks are skipped
(trust-the-network mode). The identity is the certificate's single URI SAN of
scheme bigfleet:// (ADR 0017):

    bigfleet://cluster/<cluster_id>   an operator
    bigfleet://shard/<shard_id>       a shard
    bigfleet://admin                  ctl and coordinator replicas
    bigfleet://readonly               dashboards, CLIs, alerting

The certificate and key are re-read when their files change (how cert-manager
rotates a mounted Secret); a half-written rotation keeps the last coherent
pair. The CA bundle is read once at start.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization as ser

from bigfleet.errors import IdentityRejected

log = logging.getLogger(__name__)

SCHEME = "bigfleet://"
TLS_VERSION = b"TLSv1.3"


class Role(StrEnum):
    CLUSTER = "cluster"
    SHARD = "shard"
    ADMIN = "admin"
    READONLY = "readonly"


_NAMED = frozenset({Role.CLUSTER, Role.SHARD})


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    name: str = ""  # the cluster or shard id; empty for admin and readonly

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.role}/{self.name}" if self.name else f"{SCHEME}{self.role}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> Identity:
        """The identity a bigfleet:// URI names; ValueError for anything else."""
        if not uri.startswith(SCHEME):
            raise ValueError(f"{uri!r} is not a {SCHEME} identity")
        role_text, _, name = uri[len(SCHEME) :].partition("/")
        try:
            role = Role(role_text)
        except ValueError:
            raise ValueError(f"{uri!r}: unknown role {role_text!r}") from None
        if (role in _NAMED) != bool(name) or "/" in name:
            shape = f"{SCHEME}{role}/<id>" if role in _NAMED else f"{SCHEME}{role}"
            raise ValueError(f"{uri!r}: expected {shape}")
        return cls(role, name)

    @classmethod
    def cluster(cls, cluster_id: str) -> Identity:
        return cls(Role.CLUSTER, cluster_id)

    @classmethod
    def shard(cls, shard_id: str) -> Identity:
        return cls(Role.SHARD, shard_id)


ADMIN = Identity(Role.ADMIN)
READONLY = Identity(Role.READONLY)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_flags(cls, cert: Path | None, key: Path | None, ca: Path | None) -> TLSFiles | None:
        """All three: mutual TLS; none: plaintext (None); some: ValueError naming the missing."""
        given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
        if not all_or_none(given, "mutual TLS needs a certificate, its key and the CA bundle"):
            return None
        assert cert is not None and key is not None and ca is not None
        return cls(cert, key, ca)


def all_or_none(flags: Mapping[str, object | None], why: str) -> bool:
    """True when every flag is given, False when none is; ValueError naming the missing ones."""
    missing = [flag for flag, value in flags.items() if value is None]
    if len(missing) == len(flags):
        return False
    if missing:
        named = [flag for flag in flags if flag not in missing]
        raise ValueError(
            f"{' and '.join(missing)} required with {' and '.join(named)}: {why} (or none of them)"
        )
    return True


def _load_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes, list[str]]:
    """(key PEM, certificate chain PEM, bigfleet URIs) if the files hold a matching pair."""
    chain, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    cert = x509.load_pem_x509_certificate(chain)
    key = ser.load_pem_private_key(key_pem, password=None)
    public = ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise ValueError("the key does not belong to the certificate")
    return key_pem, chain, bigfleet_uris(cert)


def bigfleet_uris(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(SCHEME)
    ]


class Credentials:
    """The process's certificate, key and CA; the pair follows rotations of its files."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.ca = files.ca.read_bytes()  # read once: a new CA means a new rollout
        x509.load_pem_x509_certificates(self.ca)  # refuse a broken bundle at start
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._refused: tuple[float, int, float, int] | None = None  # a rotation not taken
        self.key, self.chain, uris = _load_pair(files.cert, files.key)
        if len(uris) > 1:
            raise ValueError(
                f"{files.cert}: a BigFleet certificate carries one {SCHEME} URI SAN, "
                f"found {len(uris)}: {', '.join(uris)}"
            )
        # A provider's certificate only serves and may name no BigFleet identity.
        self.identity = Identity.parse(uris[0]) if uris else None
        self.rotations = 0

    def _stat(self) -> tuple[float, int, float, int]:
        c, k = os.stat(self.files.cert), os.stat(self.files.key)
        return (c.st_mtime, c.st_size, k.st_mtime, k.st_size)

    def refresh(self) -> bool:
        """Re-read the pair if its files changed; True when a new coherent pair was taken.

        Shared by a process's server and clients: whoever calls first gets True, so a user
        that must act on a change compares `rotations` with the value it last acted on.
        """
        with self._lock:
            try:
                stamp = self._stat()
                if stamp in (self._stamp, self._refused):
                    return False
                key, chain, uris = _load_pair(self.files.cert, self.files.key)
                if uris != ([self.identity.uri] if self.identity else []):
                    raise ValueError(
                        f"the new certificate names {', '.join(uris) or 'no identity'}, "
                        f"this process is {self.identity or 'without identity'}"
                    )
            except (OSError, ValueError) as err:
                # Mid-rotation (one file new, the other old or half written) or a certificate
                # for someone else: keep the last good pair, look again when the files change.
                log.warning("certificate rotation not taken", extra={"error": str(err)})
                with contextlib.suppress(OSError):
                    self._refused = self._stat()
                return False
            self._stamp, self.key, self.chain = stamp, key, chain
            self.rotations += 1
            log.info("certificate reloaded", extra={"cert": str(self.files.cert)})
            return True

    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.chain)], self.ca)

    def server(self) -> grpc.ServerCredentials:
        served = self.rotations

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # gRPC asks before every handshake; None keeps the pair being served. A client of
            # the same process may have taken the rotation first, hence the own count.
            nonlocal served
            self.refresh()
            if self.rotations == served:
                return None
            served = self.rotations
            return self._server_config()

        return grpc.dynamic_ssl_server_credentials(
            self._server_config(), fetch, require_client_authentication=True
        )

    def channel(self) -> grpc.ChannelCredentials:
        """Credentials for a new channel, with the newest coherent pair."""
        self.refresh()
        return grpc.ssl_channel_credentials(self.ca, self.key, self.chain)


def load(files: TLSFiles | None) -> Credentials | None:
    return Credentials(files) if files else None


def add_port(server: grpc.aio.Server, address: str, credentials: Credentials | None) -> int:
    """Listen on `address`, with mutual TLS when there are credentials; returns the port."""
    if credentials is None:
        return int(server.add_insecure_port(address))
    return int(server.add_secure_port(address, credentials.server()))


def channel(
    address: str,
    credentials: Credentials | None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to `address`, plaintext or mutual TLS."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials.channel(), options=options)


def sync_channel(
    address: str, credentials: Credentials | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A blocking channel (the CLIs), plaintext or mutual TLS."""
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials.channel(), options=options)


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | None:
    """The caller's identity; None on a plaintext transport. Raises IdentityRejected."""
    auth = context.auth_context()
    # Plaintext says "insecure"; anything else, or nothing, is checked (fail closed).
    if auth.get("transport_security_type") == [b"insecure"]:
        return None
    version = (auth.get("ssl_tls_version") or [b"?"])[0]
    if version != TLS_VERSION:
        # gRPC Python cannot set a minimum TLS version, so a TLS 1.2 handshake completes;
        # no call is served over it.
        raise IdentityRejected(f"TLS 1.3 required, the connection uses {version.decode()}")
    uris = [u.decode() for u in auth.get("peer_uri", []) if u.startswith(SCHEME.encode())]
    if len(uris) != 1:
        raise IdentityRejected(
            f"a client certificate must carry exactly one {SCHEME} URI SAN, it has {len(uris)}"
        )
    try:
        return Identity.parse(uris[0])
    except ValueError as err:
        raise IdentityRejected(str(err)) from None


Policy = Callable[[str], Collection[Role]]


class RequireIdentity(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuse, before the handler runs, a caller whose identity's role the method does not take.

    `policy(method)` names the roles a method (the last part of its gRPC path, e.g.
    "AssignDomain") accepts. Bindings to ids in the request (a Hello's cluster, a
    report's shard) are the handler's to check, with `peer_identity`.
    Plaintext servers get no interceptor: identity checks need mutual TLS.
    """

    def __init__(self, policy: Policy, on_reject: Callable[[str, str], None] | None = None):
        self.policy = policy
        self.on_reject = on_reject

    async def _check(self, method: str, context: grpc.aio.ServicerContext) -> None:
        try:
            identity = peer_identity(context)
            if identity is None:  # this interceptor guards mutual-TLS servers only
                raise IdentityRejected(f"{method} needs mutual TLS")
            roles = self.policy(method)
            if identity.role not in roles:
                allowed = " or ".join(f"{SCHEME}{r}" for r in sorted(roles)) or "no identity"
                raise IdentityRejected(f"{method} needs {allowed}; the caller is {identity}")
        except IdentityRejected as err:
            if self.on_reject:
                self.on_reject(method, str(err))
            await context.abort(err.code, str(err))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rpartition("/")[2]
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                return handler._replace(**{kind: self._guard(method, inner)})
        return handler

    def _guard(self, method: str, inner: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(inner):

            async def guarded_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                await self._check(method, context)
                async for response in inner(request, context):
                    yield response

            return guarded_stream

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._check(method, context)
            return await inner(request, context)

        return guarded
