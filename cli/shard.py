"""`bigfleet shard`: run one shard process."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled

if TYPE_CHECKING:
    from bigfleet.tls import TLSFiles


def _default_id() -> str | None:
    """shard-<ordinal> from a StatefulSet pod name (HOSTNAME=bigfleet-shard-2 gives shard-2)."""
    match = re.search(r"-(\d+)$", os.environ.get("HOSTNAME", ""))
    return f"shard-{match.group(1)}" if match else None


@click.command()
@click.option(
    "--id",
    "shard_id",
    envvar="BIGFLEET_SHARD_ID",
    default=_default_id,
    help="Shard id [default: shard-<ordinal> from a StatefulSet pod's HOSTNAME].",
)
@click.option(
    "--listen",
    default="0.0.0.0:7780",
    show_default=True,
    help="HOST:PORT for Shard.Session (operators dial it).",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    required=True,
    metavar="NAME=HOST:PORT",
    help="A capacity provider to dial; repeat for several.",
)
@options.metrics_port(8780, "/metrics, /healthz and /readyz")
@click.option(
    "--data-dir",
    default=Path("./data"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the epoch is persisted (a PVC in Kubernetes).",
)
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="Publish a Shard resource and apply its spec; without one the shard runs "
    "the same, without the resource.",
)
@options.in_cluster
@click.option(
    "--cycle-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between decision cycles (a demand change runs one earlier).",
)
@click.option(
    "--execute-concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Actions executed at once.",
)
@click.option(
    "--bootstrap-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds to wait for an operator's join blob before rolling back.",
)
@click.option(
    "--reclaim-cap-fraction",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Reclaims per cluster per cycle as a fraction of its Configured; 0 = no cap.",
)
@click.option(
    "--empty-rollup-guard/--no-empty-rollup-guard",
    default=True,
    show_default=True,
    help="Hold a roll-up that suddenly drops most of a cluster's demand.",
)
@click.option("--pause-acquisitions", is_flag=True, help="Start with acquisitions paused.")
@click.option("--pause-reclaims", is_flag=True, help="Start with reclaims paused.")
@click.option("--dry-run", is_flag=True, help="Decide every cycle, execute nothing.")
@click.option(
    "--max-actions-per-cycle",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Execute at most this many actions a cycle; 0 = unlimited.",
)
@click.option(
    "--cluster",
    "clusters",
    multiple=True,
    help="Serve only these cluster ids (repeat); default: any.",
)
@click.option(
    "--incremental-reconcile",
    is_flag=True,
    help="List with since_revision cursors (cannot see removed machines).",
)
@click.option(
    "--coordinator-addr",
    default=None,
    metavar="HOST:PORT[,...]",
    help="Report to the coordinator; name every replica, the leader is found among them. "
    "Without it the shard runs on its own.",
)
@click.option(
    "--coordinator-heartbeat-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between coordinator reports.",
)
@click.option(
    "--advertise-addr",
    default="",
    metavar="HOST:PORT",
    help="The address reported to the coordinator [default: --listen].",
)
@click.option(
    "--max-frame-bytes",
    default=16 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest operator frame; a larger one ends its stream (RESOURCE_EXHAUSTED).",
)
@click.option(
    "--max-clusters",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Distinct clusters the shard holds; a Hello for one more is RESOURCE_EXHAUSTED.",
)
@click.option(
    "--cluster-retention",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a disconnected cluster's session state and metric series are kept "
    "(its machines stay).",
)
@click.option(
    "--max-needs-per-rollup",
    default=50_000,
    show_default=True,
    type=click.IntRange(1),
    help="Needs in one roll-up; a longer roll-up is refused whole (INVALID_ARGUMENT).",
)
@options.tls
@options.shutdown_timeout
def shard(
    shard_id: str | None,
    listen: str,
    providers: tuple[str, ...],
    metrics_port: int,
    data_dir: Path,
    kubeconfig: str | None,
    in_cluster: bool,
    cycle_interval: float,
    execute_concurrency: int,
    bootstrap_timeout: float,
    reclaim_cap_fraction: float,
    empty_rollup_guard: bool,
    pause_acquisitions: bool,
    pause_reclaims: bool,
    dry_run: bool,
    max_actions_per_cycle: int,
    clusters: tuple[str, ...],
    incremental_reconcile: bool,
    coordinator_addr: str | None,
    coordinator_heartbeat_interval: float,
    advertise_addr: str,
    max_frame_bytes: int,
    max_clusters: int,
    cluster_retention: float,
    max_needs_per_rollup: int,
    tls: TLSFiles | None,
    shutdown_timeout: float,
) -> None:
    """Run a shard: Session server, decision engine, provider reconcile and execution.

    Static stability: it needs no coordinator; it provisions from what it owns.

    With --tls-cert/--tls-key/--tls-ca (all three) every edge is mutual TLS: the
    certificate must name bigfleet://shard/<id>; it serves Sessions (to
    bigfleet://cluster/<id> certificates, each for its own cluster only) and is
    presented to providers and the coordinator.
    """
    from bigfleet.shard import app
    from bigfleet.shard.engine.rails import RailSettings
    from bigfleet.shard.runtime.provider import parse_provider_flag

    if not shard_id:
        raise click.UsageError("--id is required outside a StatefulSet pod")
    try:
        parsed = tuple(parse_provider_flag(p) for p in providers)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--provider") from err
    settings = app.ShardSettings(
        shard_id=shard_id,
        listen=listen,
        providers=parsed,
        data_dir=data_dir,
        metrics_addr=options.metrics_address(listen.rpartition(":")[0], metrics_port),
        cycle_interval_s=cycle_interval,
        execute_concurrency=execute_concurrency,
        bootstrap_timeout_s=bootstrap_timeout,
        rails=RailSettings(
            reclaim_cap_fraction=reclaim_cap_fraction,
            pause_acquisitions=pause_acquisitions,
            pause_reclaims=pause_reclaims,
            dry_run=dry_run,
            max_actions_per_cycle=max_actions_per_cycle,
        ),
        empty_rollup_guard=empty_rollup_guard,
        allowed_clusters=frozenset(clusters),
        incremental_reconcile=incremental_reconcile,
        advertise=advertise_addr,
        coordinator_addr=coordinator_addr or "",
        coordinator_heartbeat_s=coordinator_heartbeat_interval,
        kubeconfig=kubeconfig,
        in_cluster=in_cluster,
        max_frame_bytes=max_frame_bytes,
        max_clusters=max_clusters,
        cluster_retention_s=cluster_retention,
        max_needs_per_rollup=max_needs_per_rollup,
        tls=tls,
    )
    try:
        until_signalled(lambda stop: app.run(settings, stop), shutdown_timeout)
    except app.ShardIdentityError as err:
        raise click.ClickException(str(err)) from err
