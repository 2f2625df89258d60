"""One coordinator replica: campaign on etcd, serve the Coordinator service, expose probes.

A replica always serves: followers answer reads and name the leader on
writes, so a rolling restart never leaves clients without an answer. With
the embedded store there is no etcd and exactly one replica, which leads,
and which holds a lock on its data directory while it runs.

With TLS files the Coordinator service speaks mutual TLS and checks identities
(ADR 0017; `coordinator.identity`): shards report for themselves, readonly and
admin read, only admin writes. With etcd TLS files the etcd client speaks TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aetcd
import grpc
from prometheus_client import CollectorRegistry

from bigfleet import probes
from bigfleet.coordinator import etcdclient
from bigfleet.coordinator.election import Candidate, Election
from bigfleet.coordinator.embedded import DataDirLock, EmbeddedElection, EmbeddedState
from bigfleet.coordinator.etcdclient import EtcdTLS
from bigfleet.coordinator.identity import policy
from bigfleet.coordinator.metrics import CoordinatorMetrics
from bigfleet.coordinator.rebalance import RebalanceSettings
from bigfleet.coordinator.service import CoordinatorService
from bigfleet.coordinator.store import EtcdStateReader, StateReader
from bigfleet.metrics import parse_address
from bigfleet.supervise import Loops, supervise
from bigfleet.tls import Credentials, RequireIdentity, TLSFiles, add_port, load
from bigfleet.wire import GRPC_OPTIONS, coordinator_pb2_grpc

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
    in_cluster: bool = False  # mirror, finding the API server as kubectl does
    mirror_interval_s: float = 10.0
    tls: TLSFiles | None = None  # mutual TLS on the Coordinator service; None: plaintext
    etcd_tls: EtcdTLS | None = None  # TLS (with a client certificate) to etcd


class EtcdUnreachable(ConnectionError):
    """The etcd member this replica talks to stopped answering."""


async def connect(
    endpoints: tuple[tuple[str, int], ...], tls: EtcdTLS | None = None
) -> aetcd.Client:
    """A client on the first endpoint that answers."""
    errors = []
    for host, port in endpoints:
        client = etcdclient.client(host, port, tls)
        try:
            await client.connect()
            await client.status()
            log.info("etcd connected", extra={"endpoint": f"{host}:{port}"})
            return client
        except aetcd.exceptions.ClientError as err:
            errors.append(f"{host}:{port}: {err}")
            await client.close()
    raise ConnectionError("no etcd endpoint answered: " + "; ".join(errors))


async def watch_member(client: aetcd.Client, every_s: float = 1.0, patience: int = 5) -> None:
    """Raise EtcdUnreachable after `patience` unanswered checks in a row.

    The client talks to one member; when that member dies the replica must
    move to another, which `run` does by starting over on the next endpoint.
    """
    misses = 0
    while True:
        await asyncio.sleep(every_s)
        try:
            async with asyncio.timeout(2 * every_s):
                await client.status()
            misses = 0
        except (aetcd.exceptions.ClientError, TimeoutError):
            misses += 1
            if misses >= patience:
                raise EtcdUnreachable(f"no answer from etcd for {misses} checks") from None


async def run(settings: CoordinatorSettings, stop: asyncio.Event) -> None:
    """Serve until `stop`; when its etcd member is lost, start over on the next one.

    Raises DataDirLocked when another replica runs on the embedded store's directory,
    and ValueError or OSError when the TLS files cannot be used.
    """
    credentials = load(settings.tls)  # unusable certificates stop the start here
    endpoints = settings.etcd
    with contextlib.ExitStack() as held:
        if not endpoints:  # one replica per embedded store, for as long as it runs
            held.enter_context(DataDirLock(settings.data_dir))
        while True:
            try:
                await _serve(settings, endpoints, stop, credentials)
                return
            except* EtcdUnreachable as lost:
                why = str(lost.exceptions[0])
                log.warning("moving to another etcd endpoint", extra={"error": why})
                endpoints = endpoints[1:] + endpoints[:1]  # the lost one is tried last


async def _serve(
    settings: CoordinatorSettings,
    endpoints: tuple[tuple[str, int], ...],
    stop: asyncio.Event,
    credentials: Credentials | None,
) -> None:
    client = await connect(endpoints, settings.etcd_tls) if endpoints else None
    election: Candidate
    state: StateReader
    if client is None:
        embedded = EmbeddedState(settings.data_dir / "coordinator-state.json")
        election, state = EmbeddedElection(embedded, settings.replica_id), embedded
    else:
        election = Election(client, settings.replica_id, ttl_s=settings.lease_ttl_s)
        state = EtcdStateReader(client)
    registry = CollectorRegistry()
    loops = Loops(registry)
    service = CoordinatorService(
        election,
        state,
        CoordinatorMetrics(registry),
        rebalance=settings.rebalance,
        bind_identities=credentials is not None,
        loops=loops,
    )
    mirror = None
    if settings.kubeconfig or settings.in_cluster:
        import kr8s.asyncio

        from bigfleet.coordinator.mirror import StatusMirror

        api = await kr8s.asyncio.api(kubeconfig=settings.kubeconfig)
        mirror = StatusMirror(
            api, lambda: service.store, settings.replica_id, settings.mirror_interval_s
        )
    # Plaintext gets no interceptor: identity checks need mutual TLS.
    interceptors = [RequireIdentity(policy, service.identity_rejected)] if credentials else []
    server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=interceptors)
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(service, server)
    add_port(server, settings.listen, credentials)
    await server.start()
    runner = None
    if (address := parse_address(settings.metrics_addr)) is not None:
        runner = await probes.start(
            *address,
            registry,
            lambda: service.leader_seen,
            "no coordinator leader is known yet",
            loops.problems,
        )
    log.info(
        "coordinator serving",
        extra={
            "replica": settings.replica_id,
            "listen": settings.listen,
            "tls": credentials is not None,
            "etcd_tls": client is not None and settings.etcd_tls is not None,
        },
    )
    # Supervised loops restart after an unexpected error (and make /healthz fail while dead
    # or stuck); campaigning may wait on another leader for as long as it leads.
    parts = [
        loops.run("coordinator_lead", service.lead_forever),
        loops.run("coordinator_watch_leader", service.watch_leader, max_period_s=60.0),
    ]
    if client is not None:
        parts.append(watch_member(client))  # not restarted: its error moves to another member
    if mirror is not None:
        parts.append(loops.run("coordinator_mirror", mirror.run))
    try:
        # A part that ends on its own has failed: let the process exit and restart. The
        # parts get a stop event of their own: a lost etcd member ends only this attempt.
        await supervise(asyncio.Event(), stop.wait(), *parts)
    finally:
        await election.resign()  # a clean stop hands leadership over at once
        await server.stop(grace=2)
        if runner is not None:
            await runner.cleanup()
        if client is not None:
            await client.close()
