"""`bigfleet all-in-one`: coordinator, shard and fake provider in one process, no etcd."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled
from bigfleet.tls import TLSFiles

# The demo fleet: 8 GPU machines (bare metal, no price) and 8 small general-purpose ones.
DEMO_POOLS = (
    {
        "prefix": "gpu",
        "count": 8,
        "state": "idle",
        "instance_type": "a3-highgpu-8g",
        "capacity_type": "bare-metal",
        "price_per_hour": 0.0,
        "resources": {"nvidia.com/gpu": "8", "cpu": "208", "memory": "1872Gi"},
    },
    {
        "prefix": "small",
        "count": 8,
        "state": "idle",
        "instance_type": "m6i.large",
        "capacity_type": "on-demand",
        "price_per_hour": 0.10,
        "resources": {"cpu": "2", "memory": "8Gi"},
    },
)


def _loopback(listen: str) -> str:
    """The address to dial for a listen address (0.0.0.0 and empty hosts are loopback)."""
    host, _, port = listen.rpartition(":")
    return f"{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"


@click.command("all-in-one")
@click.option("--shard-listen", default="0.0.0.0:7780", show_default=True, help="Shard.Session.")
@click.option(
    "--coordinator-listen", default="0.0.0.0:7790", show_default=True, help="Coordinator gRPC."
)
@click.option(
    "--provider-listen",
    default="127.0.0.1:7800",
    show_default=True,
    help="The fake provider's gRPC (the shard dials it here).",
)
@click.option("--shard-metrics-port", default=8780, show_default=True, type=click.IntRange(0))
@click.option("--coordinator-metrics-port", default=8790, show_default=True, type=click.IntRange(0))
@click.option(
    "--data-dir",
    default=Path("./bigfleet-data"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Shard epoch and ownership, and the coordinator's embedded store.",
)
@click.option("--shard-id", default="shard-0", show_default=True)
@click.option("--coordinator-id", default="node-1", show_default=True)
@click.option(
    "--provider-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fake provider YAML (see `bigfleet provider fake --help`) instead of the demo fleet.",
)
@click.option(
    "--cycle-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between shard decision cycles.",
)
@click.option(
    "--report-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between the shard's reports to the coordinator.",
)
@options.tls
@options.shutdown_timeout
def all_in_one(
    shard_listen: str,
    coordinator_listen: str,
    provider_listen: str,
    shard_metrics_port: int,
    coordinator_metrics_port: int,
    data_dir: Path,
    shard_id: str,
    coordinator_id: str,
    provider_config: Path | None,
    cycle_interval: float,
    report_interval: float,
    tls: TLSFiles | None,
    shutdown_timeout: float,
) -> None:
    """Run a coordinator (embedded store), one shard and a fake provider in one process.

    For demos and development: no etcd, no HA. Without --provider-config the
    fake provider holds 8 a3-highgpu-8g (8 GPU, free) and 8 m6i.large
    (2 CPU / 8Gi, $0.10/h) idle machines. Point an operator at --shard-listen.

    With the TLS flags every part speaks mutual TLS with one identity, the
    shard's certificate (`bigfleet://shard/<--shard-id>`): operators need a
    cluster certificate and ctl an admin one from the same CA.
    """
    from bigfleet.coordinator.app import CoordinatorSettings
    from bigfleet.coordinator.app import run as run_coordinator
    from bigfleet.providers_fake import app as provider_app
    from bigfleet.providers_fake.config import FleetConfig
    from bigfleet.shard import app as shard_app
    from bigfleet.supervise import supervise

    config = (
        FleetConfig.load(provider_config)
        if provider_config
        else FleetConfig.model_validate({"pools": DEMO_POOLS})
    )
    coordinator_settings = CoordinatorSettings(
        replica_id=coordinator_id,
        data_dir=data_dir / "coordinator",
        listen=coordinator_listen,
        metrics_addr=options.metrics_address(
            coordinator_listen.rpartition(":")[0], coordinator_metrics_port
        ),
        tls=tls,
    )

    async def main(stop: asyncio.Event) -> None:
        provider = await provider_app.start(
            provider_app.FakeProviderSettings(fleet=config, listen=provider_listen, tls=tls)
        )
        provider_host = _loopback(provider_listen).rpartition(":")[0]
        shard_settings = shard_app.ShardSettings(
            shard_id=shard_id,
            listen=shard_listen,
            providers=(("fake", f"{provider_host}:{provider.port}"),),
            data_dir=data_dir / "shard",
            metrics_addr=options.metrics_address(
                shard_listen.rpartition(":")[0], shard_metrics_port
            ),
            cycle_interval_s=cycle_interval,
            advertise=_loopback(shard_listen),
            coordinator_addr=_loopback(coordinator_listen),
            coordinator_heartbeat_s=report_interval,
            tls=tls,
        )
        # The same three apps their own commands run; each ends on the shared stop, and
        # any one ending on its own stops the others.
        await supervise(
            stop,
            run_coordinator(coordinator_settings, stop),
            shard_app.run(shard_settings, stop),
            provider.serve(stop),
            grace=5,
        )

    until_signalled(main, shutdown_timeout)
