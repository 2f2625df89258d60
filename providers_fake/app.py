"""The fake provider process: a FakeFleet served over gRPC, optionally booting Nodes.

`start` serves and says which port it got, for a caller that composes the fake
with other parts in one process; `run` is the whole `bigfleet provider fake`.
With a state file the fleet is restored from it (or seeded and saved there) before
the port opens, so no caller ever sees a fleet that a restart would take back.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.providers_fake import server
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.joiner import NodeJoiner
from bigfleet.providers_fake.state import Journal, open_journal
from bigfleet.supervise import Loops, supervise
from bigfleet.tls import TLSFiles, load

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FakeProviderSettings:
    fleet: FleetConfig = field(default_factory=FleetConfig)  # pools, latency, faults, seed
    listen: str = "127.0.0.1:7800"  # port 0 picks a free one
    join_nodes: bool = False  # boot Configured machines into their cluster as Nodes
    tls: TLSFiles | None = None  # mutual TLS, mutations bound to their shard; None: plaintext
    state: Path | None = None  # JSON file the fleet survives restarts in; None: memory only


@dataclass
class FakeProvider:
    """A fake provider already serving; `serve` keeps it up until told to stop."""

    settings: FakeProviderSettings
    fleet: FakeFleet
    server: grpc.aio.Server
    port: int
    journal: Journal | None = None

    @property
    def address(self) -> str:
        """HOST:PORT it listens on, with the port it was given."""
        return f"{self.settings.listen.rpartition(':')[0] or '0.0.0.0'}:{self.port}"

    async def serve(self, stop: asyncio.Event) -> None:
        """Join Nodes if asked, until `stop`; then stop serving. The joiner is a supervised
        loop: an unexpected error is logged and counted, and joining starts again."""
        loops = Loops()
        joiner = NodeJoiner(self.fleet) if self.settings.join_nodes else None
        joining = [loops.run("fake_node_joiner", joiner.run)] if joiner is not None else []
        try:
            await supervise(stop, *joining)
        finally:
            await self.server.stop(grace=2)
            if joiner is not None:
                await joiner.close()


async def start(settings: FakeProviderSettings, clock: Clock = REAL_CLOCK) -> FakeProvider:
    """Build the fleet and serve it on `settings.listen` (with mutual TLS if configured)."""
    credentials = load(settings.tls)  # unusable certificates stop the start here
    fleet = settings.fleet.build(clock.monotonic)
    # An unusable state file stops the start here too (StateFileError): never start empty.
    journal = open_journal(fleet, settings.state) if settings.state else None
    grpc_server, port = await server.start(
        fleet, settings.listen, credentials, durable=journal.flush if journal else None
    )
    return FakeProvider(settings, fleet, grpc_server, port, journal)


async def run(
    settings: FakeProviderSettings, stop: asyncio.Event, clock: Clock = REAL_CLOCK
) -> None:
    """Serve the fake provider until `stop`."""
    provider = await start(settings, clock)
    machines = len(provider.fleet)
    log.info(
        "fake provider serving",
        extra={
            "address": provider.address,
            "machines": machines,
            "tls": bool(settings.tls),
            "state": str(settings.state or ""),
        },
    )
    # For whoever started it by hand: where to point a shard or the conformance suite.
    print(f"fake provider on {provider.address} with {machines} machines", file=sys.stderr)
    await provider.serve(stop)
