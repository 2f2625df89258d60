"""`bigfleet coordinator`: run one coordinator replica on etcd."""

from __future__ import annotations

import asyncio
import socket

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled


def _endpoints(
    _ctx: click.Context, _param: click.Parameter, value: str
) -> tuple[tuple[str, int], ...]:
    parsed = []
    for item in value.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise click.BadParameter(f"{item!r} is not HOST:PORT")
        parsed.append((host, int(port)))
    return tuple(parsed)


@click.command()
@click.option(
    "--etcd",
    required=True,
    callback=_endpoints,
    metavar="HOST:PORT[,...]",
    help="etcd client endpoints; the first that answers is used.",
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
def coordinator(
    etcd: tuple[tuple[str, int], ...],
    replica_id: str,
    listen: str,
    metrics_port: int,
    lease_ttl: int,
) -> None:
    """Run a coordinator replica: leader by etcd lease, state in etcd.

    Serves shard reports and admin writes while leading; followers serve
    reads and refuse writes naming the leader. Built so far: election,
    shard registry and heartbeats, domain assignments. Not yet: instructions
    and rebalancing, quotas, providers, snapshots, the embedded store.
    """
    from coordinator.app import CoordinatorSettings, run

    settings = CoordinatorSettings(
        replica_id=replica_id,
        etcd=etcd,
        listen=listen,
        metrics_addr=options.metrics_address(listen.rpartition(":")[0], metrics_port),
        lease_ttl_s=lease_ttl,
    )

    async def main(stop: asyncio.Event) -> None:
        await run(settings, stop)

    until_signalled(main)
