"""`bigfleet bench coordinator`: failover, lost writes, and rebalance latency.

Failover: a three-member etcd and three `bigfleet coordinator` processes.
Each round sends a few acknowledged writes (shard registrations) to the
leader, SIGKILLs it, times until another replica acknowledges a write,
checks every acknowledged registration survived, and restarts the replica.

Rebalance: on the same etcd, a coordinator service (in this process) and
three scripted shards of `machines` machines each, over real gRPC. Each
move gives one shard an eligible shortfall; the others report idle
machines. The figure is the coordinator's own: from the report that made
the shortfall eligible to the recipient's claim acknowledged (the donor's
release and the claim both travel on report replies, so shards report
every 50 ms here and at once after acting, as a shard does).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aetcd
import grpc

from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok
from bigfleet.coordinator.election import Election
from bigfleet.coordinator.rebalance import RebalanceSettings
from bigfleet.coordinator.service import CoordinatorService
from bigfleet.coordinator.store import EtcdStateReader
from bigfleet.handover import RELEASED, naming
from bigfleet.stats import percentiles
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc

WRITES_PER_ROUND = 5
_POLL_S = 0.02
Progress = Callable[[int, float], None]  # (rounds done, last failover in s)


@dataclass(frozen=True)
class CoordinatorBench:
    kills: int
    lease_ttl_s: int
    etcd_election_timeout_ms: int
    failover_s: dict[str, float]
    lost_writes: int
    rebalance_s: dict[str, float]
    rebalance_moves: int
    machines_per_shard: int

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class CoordinatorProcess:
    """A `bigfleet coordinator` process on loopback, with a client for its service."""

    def __init__(self, name: str, etcd: str, work_dir: Path, ttl_s: int) -> None:
        self.grpc_port, self.metrics_port = free_port(), free_port()
        argv = [
            sys.executable, "-m", "bigfleet.cli", "--log-level", "warning", "coordinator",
            "--etcd", etcd, "--id", name, "--listen", f"127.0.0.1:{self.grpc_port}",
            "--metrics-port", str(self.metrics_port), "--lease-ttl", str(ttl_s),
        ]  # fmt: skip
        self.process = ManagedProcess(name, argv, work_dir / f"{name}.log")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.stub = coordinator_pb2_grpc.CoordinatorStub(self.channel)

    async def start(self, ready: str = "/healthz") -> None:
        """Start it and wait for `ready` (/readyz: until some replica leads)."""
        self.process.start()
        await asyncio.to_thread(
            self.process.wait_ready,
            lambda: http_ok(f"http://127.0.0.1:{self.metrics_port}{ready}"),
            60,
        )

    async def write(self, shard_id: str) -> bool:
        """Register (or heartbeat) a shard; True when this replica leads and acknowledged it."""
        try:
            ack = await self.stub.ReportShard(pb.ShardReport(shard_id=shard_id), timeout=1)
        except grpc.aio.AioRpcError:
            return False
        return bool(ack.acknowledged)


async def _first_to_ack(replicas: list[CoordinatorProcess], shard_id: str) -> CoordinatorProcess:
    while True:
        for replica in replicas:
            if await replica.write(shard_id):
                return replica
        await asyncio.sleep(_POLL_S)


class ScriptedShard:
    """A shard as the coordinator sees it: reports, and answers hand-over instructions."""

    def __init__(self, shard_id: str, machines: int, stub: coordinator_pb2_grpc.CoordinatorStub):
        self.shard_id = shard_id
        self.stub = stub
        self.idle = [f"{shard_id}-m{i}" for i in range(machines)]
        self.total = machines
        self.short = False
        self.acks: list[pb.InstructAck] = []

    def report(self) -> pb.ShardReport:
        shortfalls = [pb.Shortfall(priority=100, age_cycles=10)] if self.short else []
        acks, self.acks = self.acks, []
        return pb.ShardReport(
            shard_id=self.shard_id,
            summary=pb.ShardSummary(total_machines=self.total, free_machines=len(self.idle)),
            shortfalls=shortfalls,
            instruction_acks=acks,
        )

    def answer(self, instruction: pb.CoordinatorInstruction) -> pb.InstructAck:
        move = instruction.transfer_ownership
        ack = pb.InstructAck(instruction_id=instruction.instruction_id)
        ack.outcome = pb.InstructAck.Outcome.OUTCOME_ACCEPTED
        if move.from_shard_id == self.shard_id and not move.machine_ids:
            given, self.idle = self.idle[-8:], self.idle[:-8]
            self.total -= len(given)
            ack.reason = naming(RELEASED, given)
        elif move.to_shard_id == self.shard_id:
            self.idle.extend(move.machine_ids)
            self.total += len(move.machine_ids)
            ack.reason = f"claimed {len(move.machine_ids)}"
        return ack

    async def run(self, interval_s: float = 0.05) -> None:
        while True:
            reply = await self.stub.ReportShard(self.report(), timeout=5)
            self.acks = [self.answer(i) for i in reply.instructions]
            if not self.acks:
                await asyncio.sleep(interval_s)


async def _rebalance(
    endpoint: tuple[str, int], moves: int, machines: int, progress: Progress | None
) -> list[float]:
    client = aetcd.Client(host=endpoint[0], port=endpoint[1])
    await client.connect()
    election = Election(client, "bench", ttl_s=2, key=b"/bigfleet/bench/rebalance/leader")
    service = CoordinatorService(
        election,
        EtcdStateReader(client, b"/bigfleet/bench/rebalance/"),
        rebalance=RebalanceSettings(cooldown_s=0),
    )
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    shards = [ScriptedShard(f"shard-{i}", machines, stub) for i in range(3)]
    try:
        async with asyncio.TaskGroup() as group:  # a shard or the leader failing ends the bench
            leading = group.create_task(service.lead_forever())
            while service.store is None:
                await asyncio.sleep(_POLL_S)
            reporting = [group.create_task(s.run()) for s in shards]
            completed = service.rebalancer.completed
            for move in range(moves):
                recipient = shards[move % 3]
                recipient.short = True
                while len(service.rebalancer.completed) <= move:
                    await asyncio.sleep(0.005)
                    completed = service.rebalancer.completed
                recipient.short = False
                await asyncio.sleep(0.2)  # a report without the shortfall ends its eligibility
                if progress is not None:
                    progress(move + 1, completed[-1])
            for task in [*reporting, leading]:
                task.cancel()
        return list(completed)
    finally:
        await election.resign()
        await channel.close()
        await server.stop(None)
        await client.close()


async def _run(
    kills: int,
    ttl_s: int,
    moves: int,
    machines: int,
    election_timeout_ms: int | None,
    work_dir: Path,
    progress: Progress | None,
) -> CoordinatorBench:
    etcd = EtcdCluster(work_dir / "etcd", election_timeout_ms=election_timeout_ms)
    etcd.start()
    endpoints = ",".join(f"127.0.0.1:{p}" for p in etcd.client_ports)
    replicas = [CoordinatorProcess(f"coord-{i}", endpoints, work_dir, ttl_s) for i in range(3)]
    failovers: list[float] = []
    acked: set[str] = set()
    lost = 0
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        for round_ in range(kills):
            leader = await _first_to_ack(replicas, f"r{round_}-w0")
            acked.add(f"r{round_}-w0")
            for w in range(1, WRITES_PER_ROUND):
                if await leader.write(f"r{round_}-w{w}"):
                    acked.add(f"r{round_}-w{w}")
            leader.process.kill()
            died = time.monotonic()
            others = [r for r in replicas if r is not leader]
            successor = await _first_to_ack(others, f"r{round_}-after")
            failovers.append(time.monotonic() - died)
            acked.add(f"r{round_}-after")
            listed = await successor.stub.ListShards(pb.ListShardsRequest(), timeout=5)
            lost += len(acked - {s.shard_id for s in listed.shards})
            await leader.start()  # back as a follower for the next round
            if progress is not None:
                progress(round_ + 1, failovers[-1])
        for replica in replicas:  # the rebalance part runs its own coordinator
            replica.process.stop()
        rebalances = await _rebalance(
            ("127.0.0.1", etcd.client_ports[0]), moves, machines, progress
        )
    finally:
        for replica in replicas:
            await replica.channel.close()
            replica.process.stop()
        etcd.stop()
    return CoordinatorBench(
        kills=kills,
        lease_ttl_s=ttl_s,
        etcd_election_timeout_ms=election_timeout_ms or 1000,
        failover_s={**percentiles(failovers), "max": round(max(failovers), 3)},
        lost_writes=lost,
        rebalance_s=percentiles(rebalances),
        rebalance_moves=len(rebalances),
        machines_per_shard=machines,
    )


def run(
    kills: int,
    ttl_s: int = 2,
    moves: int = 30,
    machines: int = 100_000,
    progress: Progress | None = None,
    election_timeout_ms: int | None = None,
) -> CoordinatorBench:
    with tempfile.TemporaryDirectory(prefix="bigfleet-bench-coord-") as tmp:
        return asyncio.run(
            _run(kills, ttl_s, moves, machines, election_timeout_ms, Path(tmp), progress)
        )
