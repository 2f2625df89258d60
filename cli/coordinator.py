"""`bigfleet coordinator`: run one coordinator replica on etcd (or the embedded store)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled

if TYPE_CHECKING:
    from bigfleet.tls import TLSFiles


def _endpoints(
    _ctx: click.Context, _param: click.Parameter, value: str
) -> tuple[tuple[str, int], ...]:
    if not value:
        return ()
    parsed = []
    for item in value.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise click.BadParameter(f"{item!r} is not HOST:PORT")
        parsed.append((host, int(port)))
    return tuple(parsed)


@click.command()
@click.option(
    "--store",
    type=click.Choice(["etcd", "embedded"]),
    default="etcd",
    show_default=True,
    help="etcd for N replicas; embedded keeps state in a local file (one replica, no HA).",
)
@click.option(
    "--etcd",
    default="",
    callback=_endpoints,
    metavar="HOST:PORT[,...]",
    help="etcd client endpoints (required with --store etcd); the first that answers is used.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./coord-data"),
    show_default=True,
    help="Where the embedded store keeps its file.",
)
@click.option(
    "--id",
    "replica_id",
    default=socket.gethostname,
    show_default="host name",
    help="This replica's name, as followers report the leader.",
)
@click.option("--listen", default="0.0.0.0:7790", show_default=True, help="HOST:PORT for gRPC.")
@options.metrics_port(8790, "/metrics, /healthz and /readyz")
@click.option(
    "--lease-ttl",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds a leader may go silent before another replica takes over.",
)
@click.option(
    "--rebalance-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between rebalancing sweeps (new eligible demand also starts one).",
)
@click.option(
    "--rebalance-min-age",
    default=5,
    show_default=True,
    type=click.IntRange(0),
    help="Shard cycles a shortfall must last before other shards' machines move to it.",
)
@click.option(
    "--rebalance-drain-age",
    default=12,
    show_default=True,
    type=click.IntRange(0),
    help="Shard cycles after which lower-priority machines of another shard are drained for it.",
)
@click.option(
    "--rebalance-cooldown",
    default=40.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a shard waits after receiving machines before it may receive more.",
)
@options.tls
@click.option(
    "--etcd-cacert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CA bundle that signed etcd's server certificate (PEM). All three --etcd-cacert, "
    "--etcd-cert, --etcd-key: TLS to etcd; none: plaintext.",
)
@click.option(
    "--etcd-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Client certificate presented to etcd (PEM).",
)
@click.option(
    "--etcd-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Its private key (PEM).",
)
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="Mirror shard registrations, heartbeats, domains and moves onto the Shard "
    "objects' status.coordinator (read-only; the store stays the source of truth).",
)
@options.in_cluster
@click.option(
    "--mirror-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between mirror writes (leader only).",
)
@options.shutdown_timeout
def coordinator(
    store: str,
    etcd: tuple[tuple[str, int], ...],
    data_dir: Path,
    replica_id: str,
    listen: str,
    metrics_port: int,
    lease_ttl: int,
    rebalance_interval: float,
    rebalance_min_age: int,
    rebalance_drain_age: int,
    rebalance_cooldown: float,
    tls: TLSFiles | None,
    etcd_cacert: Path | None,
    etcd_cert: Path | None,
    etcd_key: Path | None,
    kubeconfig: str | None,
    in_cluster: bool,
    mirror_interval: float,
    shutdown_timeout: float,
) -> None:
    """Run a coordinator replica: leader by etcd lease, state in etcd.

    Serves shard reports and admin writes while leading; followers serve
    reads and refuse writes naming the leader. The leader rebalances:
    shards with aged shortfalls receive idle machines, quota slots, or
    (for higher priority) machines drained from other shards. With
    --store embedded there is no etcd: one replica, state in --data-dir,
    which it locks while it runs. With --tls-cert, --tls-key and --tls-ca
    the service speaks mutual TLS: shards report for themselves only,
    readonly and admin certificates read, only admin writes.
    """
    from bigfleet.coordinator.app import CoordinatorSettings, run
    from bigfleet.coordinator.embedded import DataDirLocked
    from bigfleet.coordinator.etcdclient import EtcdTLS
    from bigfleet.coordinator.rebalance import RebalanceSettings
    from bigfleet.tls import load

    if store == "etcd" and not etcd:
        raise click.UsageError("--etcd is required with --store etcd")
    if store == "embedded" and etcd:
        raise click.UsageError("--etcd does not apply to --store embedded")
    try:
        etcd_tls = EtcdTLS.from_flags(etcd_cacert, etcd_cert, etcd_key)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if store == "embedded" and etcd_tls:
        raise click.UsageError("--etcd-cacert, --etcd-cert and --etcd-key need --store etcd")
    try:
        load(tls)  # refuse unusable certificates before anything starts
    except (OSError, ValueError) as err:
        raise click.UsageError(f"TLS files: {err}") from err
    settings = CoordinatorSettings(
        replica_id=replica_id,
        etcd=etcd,
        data_dir=data_dir,
        listen=listen,
        metrics_addr=options.metrics_address(listen.rpartition(":")[0], metrics_port),
        lease_ttl_s=lease_ttl,
        rebalance=RebalanceSettings(
            interval_s=rebalance_interval,
            min_age_cycles=rebalance_min_age,
            drain_age_cycles=rebalance_drain_age,
            cooldown_s=rebalance_cooldown,
        ),
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        mirror_interval_s=mirror_interval,
        tls=tls,
        etcd_tls=etcd_tls,
    )
    try:
        until_signalled(lambda stop: run(settings, stop), shutdown_timeout)
    except DataDirLocked as err:
        raise click.ClickException(str(err)) from err
