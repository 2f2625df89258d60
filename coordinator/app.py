"""One coordinator replica: campaign on etcd, serve the Coordinator service, expose probes.

A replica always serves: followers answer reads and name the leader on
writes, so a rolling restart never leaves clients without an answer. With
the embedded store there is no etcd and exactly one replica, which leads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aetcd
import grpc
from prometheus_client import CollectorRegistry

from bigfleet import probes
from bigfleet.metrics import parse_address
from bigfleet.wire import GRPC_OPTIONS, coordinator_pb2_grpc
from coordinator.election import Candidate, Election
from coordinator.embedded import EmbeddedElection, EmbeddedState
from coordinator.metrics import CoordinatorMetrics
from coordinator.rebalance import RebalanceSettings
from coordinator.service import CoordinatorService
from coordinator.store import EtcdStateReader, StateReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoordinatorSettings:
    replica_id: str
    etcd: tuple[tuple[str, int], ...] = ()  # empty: the embedded store
    data_dir: Path = Path("./coord-data")  # the embedded store's file lives here
    listen: str = "0.0.0.0:7790"
    metrics_addr: str = "0.0.0.0:8790"
    lease_ttl_s: int = 2
    rebalance: RebalanceSettings = field(default_factory=RebalanceSettings)
    kubeconfig: str | None = None  # mirror state onto Shard objects when set
    mirror_interval_s: float = 10.0


async def connect(endpoints: tuple[tuple[str, int], ...]) -> aetcd.Client:
    """A client on the first endpoint that answers."""
    errors = []
    for host, port in endpoints:
        client = aetcd.Client(host=host, port=port, timeout=5)
        try:
            await client.connect()
            await client.status()
            return client
        except aetcd.exceptions.ClientError as err:
            errors.append(f"{host}:{port}: {err}")
            await client.close()
    raise ConnectionError("no etcd endpoint answered: " + "; ".join(errors))


async def run(settings: CoordinatorSettings, stop: asyncio.Event) -> None:
    client = await connect(settings.etcd) if settings.etcd else None
    election: Candidate
    state: StateReader
    if client is None:
        embedded = EmbeddedState(settings.data_dir / "coordinator-state.json")
        election, state = EmbeddedElection(embedded, settings.replica_id), embedded
    else:
        election = Election(client, settings.replica_id, ttl_s=settings.lease_ttl_s)
        state = EtcdStateReader(client)
    registry = CollectorRegistry()
    service = CoordinatorService(
        election, state, CoordinatorMetrics(registry), rebalance=settings.rebalance
    )
    server = grpc.aio.server(options=GRPC_OPTIONS)
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(service, server)
    server.add_insecure_port(settings.listen)
    await server.start()
    runner = None
    if (address := parse_address(settings.metrics_addr)) is not None:
        runner = await probes.start(
            *address, registry, lambda: service.leader_seen, "no coordinator leader is known yet"
        )
    log.info(
        "coordinator serving", extra={"replica": settings.replica_id, "listen": settings.listen}
    )
    tasks = [
        asyncio.create_task(service.lead_forever()),
        asyncio.create_task(service.watch_leader()),
    ]
    if settings.kubeconfig:
        import kr8s.asyncio

        from coordinator.mirror import StatusMirror

        api = await kr8s.asyncio.api(kubeconfig=settings.kubeconfig)
        mirror = StatusMirror(
            api, lambda: service.store, settings.replica_id, settings.mirror_interval_s
        )
        tasks.append(asyncio.create_task(mirror.run()))
    stopping = asyncio.create_task(stop.wait())
    try:
        # A background task that ends on its own has failed: let the process exit and restart.
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                task.result()  # re-raise its error
    finally:
        stopping.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await election.resign()  # a clean stop hands leadership over at once
        await server.stop(grace=2)
        if runner is not None:
            await runner.cleanup()
        if client is not None:
            await client.close()
