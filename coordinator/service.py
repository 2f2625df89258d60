"""The Coordinator gRPC service of one replica.

Every replica campaigns; the one that leads serves ReportShard and the admin
writes, the others answer those with FAILED_PRECONDITION naming the leader,
so a client can redial. Reads of the replicated tables come from etcd and
any replica serves them; the last report per shard is leader-local soft
state and starts empty after a failover.

Its loops (campaigning, watching the leader, the leader's rebalance sweeps) run
under `bigfleet.supervise.Loops`: an unexpected error is logged, counted and the
loop started again, and /healthz fails while one is dead or stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aetcd
import grpc
from prometheus_client import CollectorRegistry

from bigfleet.clock import REAL_CLOCK, Clock, woken
from bigfleet.coordinator import registry
from bigfleet.coordinator.election import Candidate
from bigfleet.coordinator.identity import reporter_mismatch
from bigfleet.coordinator.instructions import InstructionQueue
from bigfleet.coordinator.metrics import CoordinatorMetrics
from bigfleet.coordinator.rebalance import (
    TRANSFERS,
    Rebalancer,
    RebalanceSettings,
    Transfer,
    transfers,
)
from bigfleet.coordinator.store import NotLeader, StateReader, Store, StoreUnavailable
from bigfleet.errors import BigFleetError, IdentityRejected, abort_with
from bigfleet.supervise import Loops, beat, supervise
from bigfleet.tls import peer_identity
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")
SNAPSHOT_CHUNK = 1 << 20


class Unimplemented(BigFleetError):
    """An RPC kept only so the wire contract stays whole."""

    code = grpc.StatusCode.UNIMPLEMENTED


def _without_requirements(shortfall: pb.Shortfall) -> pb.Shortfall:
    """Reports are kept without requirements: soft state for humans, not for matching."""
    kept = pb.Shortfall()
    kept.CopyFrom(shortfall)
    del kept.requirements[:]
    return kept


class CoordinatorService(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self,
        election: Candidate,
        state: StateReader,
        metrics: CoordinatorMetrics | None = None,
        rebalance: RebalanceSettings | None = None,
        clock: Clock = REAL_CLOCK,
        bind_identities: bool = False,
        loops: Loops | None = None,
    ) -> None:
        self.election = election
        self.loops = loops or Loops(clock=clock)
        # Under mutual TLS: a report must come from the certificate of the shard it names.
        self.bind_identities = bind_identities
        self.clock = clock
        self.state = state
        self.metrics = metrics or CoordinatorMetrics(CollectorRegistry())
        self.rebalance_settings = rebalance or RebalanceSettings()
        self.store: Store | None = None  # set while this replica leads
        self.reports: dict[str, pb.ShardReportSnapshot] = {}
        self.instructions = InstructionQueue(term=0)  # replaced on every win
        self.rebalancer = self._new_rebalancer()  # leader-local; replaced on every win
        self.known_providers: set[str] = set()
        self.leader_seen = False  # readiness: some replica leads
        self._writes = asyncio.Lock()  # one leader write at a time (see registry)

    async def lead_forever(self) -> None:
        """Campaign, lead until the lease is lost, step down, campaign again."""
        while True:
            try:
                leadership = await self.election.campaign()
            except aetcd.exceptions.ClientError as err:
                log.warning("campaign failed; retrying", extra={"error": str(err)})
                await self.clock.sleep(self.election.ttl_s)
                continue
            try:
                store = self.election.store_for(leadership.term, self.state.prefix)
                self.store = store
                self.reports, self.instructions = {}, InstructionQueue(leadership.term)
                self.rebalancer, self.known_providers = self._new_rebalancer(), set()
                self.metrics.term.set(leadership.term)
                # Sweeps run while this term lasts. A stop event of its own: the election's
                # `lost` is the election's to set.
                await supervise(
                    asyncio.Event(),
                    self.election.lost.wait(),
                    self.loops.run(
                        "coordinator_rebalance",
                        functools.partial(self._rebalance_while_leading, store),
                        max_period_s=self._rebalance_stuck_after,
                    ),
                )
            except Exception:
                # This loop is restarted and campaigns again: the lease it still holds
                # must go first, or it would wait on its own key.
                await self.election.resign()
                raise
            finally:
                self.store, self.reports = None, {}
                self.metrics.term.set(0)
                log.warning("stepped down", extra={"term": leadership.term})

    def _new_rebalancer(self) -> Rebalancer:
        rebalancer = Rebalancer(
            self.rebalance_settings,
            send=self._instruct,
            cancel=lambda shard, i: self.instructions.cancel(shard, i),
            clock=self.clock,
        )
        rebalancer.on_done = self._rebalanced
        return rebalancer

    def _rebalanced(self, move: Transfer, seconds: float) -> None:
        self.metrics.rebalance_moves.labels(move.tier).inc()
        self.metrics.rebalance_seconds.observe(seconds)

    async def _rebalance_while_leading(self, store: Store) -> None:
        """Resume open moves, then sweep every interval or when new demand ages in."""
        rebalancer = self.rebalancer
        while True:
            try:
                async with self._writes:
                    await rebalancer.resume(store)
                break
            except Exception as err:  # top of a loop: tried again after an interval
                log.warning("resuming moves failed", extra={"error": str(err)})
                beat()
                await self.clock.sleep(self.rebalance_settings.interval_s)
        while True:
            beat()
            await woken(rebalancer.wake, self.clock, self.rebalance_settings.interval_s)
            rebalancer.wake.clear()
            try:
                async with self._writes:
                    await rebalancer.sweep(store)
            except Exception as err:  # top of a loop: the next sweep tries again
                log.warning("rebalance sweep failed", extra={"error": str(err)})

    def _rebalance_stuck_after(self) -> float:
        """Liveness: a sweep (waiting for the write lock included) and the wait before the
        next take far less than this."""
        return max(120.0, 5 * self.rebalance_settings.interval_s)

    async def watch_leader(self, every_s: float = 1.0) -> None:
        """Keep `leader_seen` current, for the readiness probe."""
        while True:
            beat()
            try:
                self.leader_seen = await self.election.leader() is not None
            except aetcd.exceptions.ClientError:
                self.leader_seen = False
            await self.clock.sleep(every_s)

    async def _refuse_unless_leading(self, context: grpc.aio.ServicerContext) -> Store:
        store = self.store
        if store is None:
            try:
                leader = await self.election.leader()
            except aetcd.exceptions.ClientError:
                leader = None
            await abort_with(
                context, NotLeader(f"not the leader; the leader is {leader or 'not known'}")
            )
        return store

    async def _as_leader(
        self, context: grpc.aio.ServicerContext, write: Callable[[Store], Awaitable[T]]
    ) -> T:
        await self._refuse_unless_leading(context)  # followers refuse without queueing
        async with self._writes:
            try:
                result = await write(await self._refuse_unless_leading(context))
            except NotLeader as err:  # the term ended under this write
                self.metrics.apply.labels("error").inc()
                await abort_with(context, err)
            except BigFleetError as err:
                self.metrics.apply.labels("fsm_error").inc()
                await abort_with(context, err)
            except aetcd.exceptions.ClientError as err:
                self.metrics.apply.labels("error").inc()
                await abort_with(context, StoreUnavailable(f"etcd: {err}"))
            self.metrics.apply.labels("success").inc()
            return result

    async def _read(self, context: grpc.aio.ServicerContext, read: Awaitable[T]) -> T:
        try:
            return await read
        except aetcd.exceptions.ClientError as err:
            await abort_with(context, StoreUnavailable(f"etcd: {err}"))

    def identity_rejected(self, rpc: str, why: str) -> None:
        """Count and log a call refused for its caller's identity (mutual TLS only)."""
        self.metrics.identity_rejected.labels(rpc).inc()
        log.warning("call refused for its caller's identity", extra={"rpc": rpc, "error": why})

    async def _bind_reporter(self, context: grpc.aio.ServicerContext, shard_id: str) -> None:
        """Refuse a report unless the caller's certificate names `shard_id` (strict)."""
        if not self.bind_identities:
            return
        try:
            why = reporter_mismatch(peer_identity(context), shard_id)
        except IdentityRejected as err:
            why = str(err)
        if why is not None:
            self.identity_rejected("ReportShard", why)
            await abort_with(context, IdentityRejected(why))

    async def ReportShard(
        self, request: pb.ShardReport, context: grpc.aio.ServicerContext
    ) -> pb.ReportAck:
        await self._bind_reporter(context, request.shard_id)

        async def report(store: Store) -> int:
            now = time.time_ns()
            if not await registry.heartbeat(store, request.shard_id, now):
                await registry.add_shard(store, request.shard_id, request.shard_address, now)
            self.reports[request.shard_id] = pb.ShardReportSnapshot(
                shard_id=request.shard_id,
                cycle=request.cycle,
                received_at_unix_ns=now,
                summary=request.summary,
                shortfalls=[_without_requirements(s) for s in request.shortfalls],
            )
            provider = request.summary.provider_address
            if provider and provider not in self.known_providers:
                await registry.register_provider(store, registry.Provider(provider, provider))
                self.known_providers.add(provider)
            self.rebalancer.observe(request)
            moved = await self.rebalancer.acknowledged(
                store, request.shard_id, request.instruction_acks
            )
            for move in moved:
                if move.tier == "speculative" and move.machine_ids:
                    await registry.move_quota(
                        store,
                        move.provider,
                        "",
                        move.donor,
                        move.recipient,
                        len(move.machine_ids),
                    )
            return store.term

        term = await self._as_leader(context, report)
        self.instructions.acknowledge(request.shard_id, request.instruction_acks)
        owed = self.instructions.for_shard(request.shard_id)
        self.metrics.pending.labels(request.shard_id).set(len(owed))
        return pb.ReportAck(coordinator_term=term, acknowledged=True, instructions=owed)

    def _instruct(
        self, shard_id: str, instruction: pb.CoordinatorInstruction, instruction_id: str = ""
    ) -> None:
        self.instructions.send(shard_id, instruction, instruction_id)
        owed = len(self.instructions.for_shard(shard_id))
        self.metrics.pending.labels(shard_id).set(owed)

    async def AssignDomain(
        self, request: pb.AssignDomainRequest, context: grpc.aio.ServicerContext
    ) -> pb.AssignDomainResponse:
        domain = registry.Domain(request.topology_key, request.topology_value, request.shard_id)
        await self._as_leader(context, lambda store: registry.assign_domain(store, domain))
        payload = pb.AssignDomain(
            topology_key=request.topology_key, topology_value=request.topology_value
        )
        self._instruct(request.shard_id, pb.CoordinatorInstruction(assign_domain=payload))
        return pb.AssignDomainResponse()

    async def UnassignDomain(
        self, request: pb.UnassignDomainRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnassignDomainResponse:
        owner = await self._as_leader(
            context,
            lambda store: registry.unassign_domain(
                store, request.topology_key, request.topology_value
            ),
        )
        if owner is not None:
            payload = pb.UnassignDomain(
                topology_key=request.topology_key, topology_value=request.topology_value
            )
            self._instruct(owner, pb.CoordinatorInstruction(unassign_domain=payload))
        return pb.UnassignDomainResponse()

    async def RemoveShard(
        self, request: pb.RemoveShardRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveShardResponse:
        async def remove(store: Store) -> None:
            await registry.remove_shard(store, request.shard_id)
            # Moves it takes part in end with it: its machines leave with the shard.
            involved = [
                TRANSFERS + t.recipient
                for t in (await transfers(store)).values()
                if request.shard_id in (t.recipient, t.donor)
            ]
            if involved:
                await store.commit({}, deletes=involved)

        await self._as_leader(context, remove)
        self.reports.pop(request.shard_id, None)
        self.rebalancer.forget(request.shard_id)
        self.instructions.forget(request.shard_id)
        with contextlib.suppress(KeyError):  # a shard never instructed has no series
            self.metrics.pending.remove(request.shard_id)
        return pb.RemoveShardResponse()

    async def JoinRaftCluster(
        self, request: pb.JoinRaftClusterRequest, context: grpc.aio.ServicerContext
    ) -> pb.JoinRaftClusterResponse:
        # Kept for wire compatibility: membership belongs to etcd here.
        await abort_with(context, Unimplemented("membership is etcd's; add an etcd member"))

    async def ListShards(
        self, request: pb.ListShardsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListShardsResponse:
        entries = await self._read(context, registry.shards(self.state))
        return pb.ListShardsResponse(
            shards=[
                pb.ShardRegistryEntry(
                    shard_id=e.shard_id,
                    address=e.address,
                    registered_at_unix_ns=e.registered_at_unix_ns,
                    last_heartbeat_unix_ns=e.last_heartbeat_unix_ns,
                )
                for e in entries
            ]
        )

    async def ListDomainAssignments(
        self, request: pb.ListDomainAssignmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDomainAssignmentsResponse:
        found = await self._read(context, registry.domains(self.state))
        return pb.ListDomainAssignmentsResponse(
            assignments=[
                pb.DomainAssignment(
                    topology_key=d.topology_key,
                    topology_value=d.topology_value,
                    shard_id=d.shard_id,
                )
                for d in found
            ]
        )

    async def ListQuotas(
        self, request: pb.ListQuotasRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQuotasResponse:
        found = await self._read(context, registry.quotas(self.state))
        return pb.ListQuotasResponse(
            allocations=[
                pb.QuotaAllocation(provider=p, region=r, per_shard=slots) for p, r, slots in found
            ]
        )

    async def ListProviders(
        self, request: pb.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProvidersResponse:
        found = await self._read(context, registry.providers(self.state))
        return pb.ListProvidersResponse(
            providers=[
                pb.ProviderEntry(name=p.name, address=p.address, region=p.region) for p in found
            ]
        )

    async def SnapshotSave(
        self, request: pb.SnapshotSaveRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SnapshotSaveChunk]:
        """A consistent export of every table: one read of the state prefix, as JSON."""
        store = await self._refuse_unless_leading(context)
        tables = await self._read(context, store.scan(""))
        meta = {"term": store.term, "keys": len(tables), "taken_at_unix_ns": time.time_ns()}
        yield pb.SnapshotSaveChunk(meta_json=json.dumps(meta).encode())
        data = json.dumps({k: v.decode() for k, v in sorted(tables.items())}).encode()
        for start in range(0, len(data), SNAPSHOT_CHUNK):
            yield pb.SnapshotSaveChunk(data=data[start : start + SNAPSHOT_CHUNK])

    async def ListShardReports(
        self, request: pb.ListShardReportsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListShardReportsResponse:
        await self._refuse_unless_leading(context)  # soft state: only the leader's is current
        wanted = sorted(r for r in self.reports if not request.shard_id or r == request.shard_id)
        return pb.ListShardReportsResponse(reports=[self.reports[r] for r in wanted])
