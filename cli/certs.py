"""`bigfleet certs init DIR`: throw-away certificates to turn mutual TLS on locally."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from bigfleet import pki
from bigfleet.tls import ADMIN, READONLY, Identity


@click.group()
def certs() -> None:
    """Certificates for mutual TLS between BigFleet's processes (development and tests)."""


@certs.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--cluster",
    "clusters",
    multiple=True,
    default=("cluster-a",),
    show_default=True,
    help="Cluster id to issue an operator certificate for (repeat).",
)
@click.option(
    "--shard",
    "shards",
    multiple=True,
    default=("shard-0",),
    show_default=True,
    help="Shard id to issue a shard certificate for (repeat).",
)
@click.option(
    "--dns",
    multiple=True,
    default=("localhost",),
    show_default=True,
    help="DNS name servers are reached by (repeat).",
)
@click.option(
    "--ip",
    "ips",
    multiple=True,
    default=("127.0.0.1",),
    show_default=True,
    help="IP address servers are reached by (repeat).",
)
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--force", is_flag=True, help="Overwrite certificates already in DIRECTORY.")
def init(
    directory: Path,
    clusters: tuple[str, ...],
    shards: tuple[str, ...],
    dns: tuple[str, ...],
    ips: tuple[str, ...],
    days: int,
    force: bool,
) -> None:
    """Write a new CA and one certificate per identity into DIRECTORY.

    Each identity gets a folder laid out like a kubernetes.io/tls Secret
    (tls.crt, tls.key, ca.crt): cluster/<id> (operators), shard/<id> (shards),
    admin (ctl, coordinator replicas), readonly (dashboards), and provider (a
    capacity provider's server certificate, no BigFleet identity). Point a
    process at one with --tls-cert DIR/X/tls.crt --tls-key DIR/X/tls.key
    --tls-ca DIR/X/ca.crt. Not for production: the CA key stays on disk.
    """
    if (directory / "ca.crt").exists() and not force:
        raise click.UsageError(f"{directory} already holds a CA; pass --force to replace it")
    try:
        validity = datetime.timedelta(days=days)
        authority = pki.Authority.create("bigfleet-dev-ca", validity)
        identities: dict[str, Identity | None] = {
            **{f"cluster/{c}": Identity.cluster(c) for c in clusters},
            **{f"shard/{s}": Identity.shard(s) for s in shards},
            "admin": ADMIN,
            "readonly": READONLY,
            "provider": None,
        }
        directory.mkdir(parents=True, exist_ok=True)
        pki.write_private(directory / "ca.key", pki.key_pem(authority.key))
        ca_pem = pki.cert_pem(authority.cert)
        (directory / "ca.crt").write_bytes(ca_pem)
        for folder, identity in identities.items():
            cert, key = authority.issue(
                pki.name(identity.uri if identity else "bigfleet-provider"),
                validity=validity,
                dns=dns,
                ips=ips,
                uris=[identity.uri] if identity else [],
            )
            out = directory / folder
            out.mkdir(parents=True, exist_ok=True)
            pki.write_private(out / "tls.key", pki.key_pem(key))
            (out / "tls.crt").write_bytes(pki.cert_pem(cert))
            (out / "ca.crt").write_bytes(ca_pem)
            click.echo(f"{out}/  {identity or 'provider (no identity)'}")
    except ValueError as err:
        raise click.UsageError(str(err)) from err
