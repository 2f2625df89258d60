"""`bigfleet operator`: the per-cluster operator."""

from __future__ import annotations

from pathlib import Path

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled
from bigfleet.leader import LeaderElection, LeadershipLost
from bigfleet.tls import TLSFiles


@click.command()
@click.option("--cluster-id", required=True, help="This cluster's id; it never changes.")
@click.option(
    "--shard",
    "shard_address",
    required=True,
    metavar="HOST:PORT",
    help="The shard this cluster belongs to (dialled out, never listened on).",
)
@options.cluster_kubeconfig
@click.option(
    "--rollup-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between full roll-ups of the CapacityRequests.",
)
@click.option(
    "--ack-concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="CapacityRequest status patches in flight at once.",
)
@click.option(
    "--bootstrap-template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Jinja2 template of the kubelet join blob "
    "(context: cluster_id, request_id, requirements, labels, api_server, ca_bundle, "
    "ca_bundle_b64, token); default: a cloud-config stub.",
)
@click.option(
    "--api-server-url",
    default=None,
    help="API server URL written into join blobs [default: the kubeconfig's].",
)
@click.option(
    "--upcoming-retention",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a Drained or Failed UpcomingNode is kept before it is deleted.",
)
@click.option(
    "--verdict-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds between reads of the shard's verdicts for this cluster, written as the "
    "Satisfied condition of each CapacityRequest; 0 turns them off.",
)
@options.metrics_port(8770)
@options.tls
@options.leader_election("bigfleet-operator-{cluster_id}")
@options.shutdown_timeout
def operator(
    cluster_id: str,
    shard_address: str,
    kubeconfig: Path | None,
    rollup_interval: float,
    ack_concurrency: int,
    bootstrap_template: Path | None,
    api_server_url: str | None,
    upcoming_retention: float,
    verdict_interval: float,
    metrics_port: int,
    tls: TLSFiles | None,
    leader_election: LeaderElection | None,
    shutdown_timeout: float,
) -> None:
    """Run the per-cluster operator: roll-ups out, join blobs, UpcomingNodes and drains in."""
    from bigfleet.operators.operator import app

    settings = app.OperatorSettings(
        cluster_id=cluster_id,
        shard_address=shard_address,
        kubeconfig=kubeconfig,
        rollup_interval_s=rollup_interval,
        ack_concurrency=ack_concurrency,
        bootstrap_template=bootstrap_template,
        api_server_url=api_server_url,
        metrics_addr=options.metrics_address("", metrics_port),
        upcoming_retention_s=upcoming_retention,
        verdict_interval_s=verdict_interval,
        tls=tls,
        leader_election=leader_election,
    )

    try:
        app.credentials_for(settings)  # refuse a certificate for another cluster up front
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    try:
        until_signalled(lambda stop: app.run(settings, stop), shutdown_timeout)
    except LeadershipLost as err:  # a standby may lead now: end, to come back as one
        raise click.ClickException(str(err)) from None
