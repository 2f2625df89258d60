"""`bigfleet provider fake`: serve the in-memory fake CapacityProvider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled

if TYPE_CHECKING:
    from bigfleet.tls import TLSFiles


@click.group()
def provider() -> None:
    """Serve a capacity provider."""


@provider.command()
@click.option(
    "--listen",
    default="127.0.0.1:7800",
    show_default=True,
    help="HOST:PORT to serve CapacityProvider on (port 0 picks a free one).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML fleet: pools, latency, faults, seed.",
)
@click.option(
    "--idle",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed this many Idle machines of the default shape (8 CPU / 32Gi, "
    "on-demand, $0.40/h, zone-a).",
)
@click.option(
    "--speculative",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed this many Speculative quota slots of the default shape.",
)
@click.option(
    "--join-nodes",
    is_flag=True,
    help="Boot Configured machines into their cluster: TLS-bootstrap with the join blob's "
    "token, register a Node (annotated for kwok), delete it when the machine leaves.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file that machines, fence marks, operation ids and the revision survive a "
    "restart in. Missing: seed as usual and create it; unreadable: refuse to start.",
)
@options.tls
@options.shutdown_timeout
def fake(
    listen: str,
    config_path: Path | None,
    idle: int,
    speculative: int,
    join_nodes: bool,
    state_path: Path | None,
    tls: TLSFiles | None,
    shutdown_timeout: float,
) -> None:
    """Serve the fake provider: a test and demo fixture, never for production.

    Transitions are asynchronous with the configured per-state latency;
    stale fencing tokens are refused with FAILED_PRECONDITION. With --tls-cert,
    --tls-key and --tls-ca it speaks mutual TLS and takes a mutation only from
    the shard its fencing token names (bigfleet://shard/<id>): PERMISSION_DENIED
    otherwise.

    With --state FILE the fleet outlives the process: the file, when present, replaces
    the seeded machines (delete it to reseed), and every answer waits for the change
    before it to be written.
    """
    from bigfleet.providers_fake.app import FakeProviderSettings, run
    from bigfleet.providers_fake.config import FleetConfig
    from bigfleet.providers_fake.state import StateFileError
    from bigfleet.tls import load

    try:
        load(tls)  # refuse unusable certificates before anything starts
    except (OSError, ValueError) as err:
        raise click.UsageError(f"TLS files: {err}") from err
    config = FleetConfig.load(config_path) if config_path else FleetConfig()
    settings = FakeProviderSettings(
        fleet=config.with_quick_seeds(idle, speculative),
        listen=listen,
        join_nodes=join_nodes,
        tls=tls,
        state=state_path,
    )
    try:
        until_signalled(lambda stop: run(settings, stop), shutdown_timeout)
    except StateFileError as err:
        raise click.ClickException(str(err)) from err
