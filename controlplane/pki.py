"""Certificates for a loopback control plane: one CA, the API server, an admin client."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from bigfleet import pki

_VALIDITY = datetime.timedelta(days=7)
_SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def make_pki(directory: Path) -> Pki:
    """Write a fresh CA, a server certificate for loopback and an admin (system:masters) client."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = pki.Authority.create("bigfleet-test-ca", _VALIDITY)
    server, server_key = authority.issue(
        pki.name("kube-apiserver"),
        validity=_VALIDITY,
        usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
        dns=_SERVER_NAMES,
        ips=("127.0.0.1", "10.0.0.1"),
    )
    admin, admin_key = authority.issue(
        pki.name("bigfleet-admin", "system:masters"),
        validity=_VALIDITY,
        usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    # Service-account tokens are signed with RSA, which every consumer accepts.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    )
    write = pki.write_private
    return Pki(
        ca_cert=write(directory / "ca.crt", pki.cert_pem(authority.cert)),
        ca_key=write(directory / "ca.key", pki.key_pem(authority.key)),
        server_cert=write(directory / "apiserver.crt", pki.cert_pem(server)),
        server_key=write(directory / "apiserver.key", pki.key_pem(server_key)),
        admin_cert=write(directory / "admin.crt", pki.cert_pem(admin)),
        admin_key=write(directory / "admin.key", pki.key_pem(admin_key)),
        service_account_key=write(directory / "sa.key", pki.key_pem(sa_key)),
        service_account_pub=write(directory / "sa.pub", sa_pub),
    )
