"""`bigfleet bench coordinator`: failover time and lost writes over repeated leader kills.

Starts a three-member etcd and three `bigfleet coordinator` processes. Each
round sends a few acknowledged writes (shard registrations) to the leader,
SIGKILLs it, times until another replica acknowledges a write, checks every
acknowledged registration survived, and restarts the killed replica.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc

WRITES_PER_ROUND = 5
_POLL_S = 0.02
Progress = Callable[[int, float], None]  # (rounds done, last failover in s)


@dataclass(frozen=True)
class CoordinatorBench:
    kills: int
    lease_ttl_s: int
    failover_s: dict[str, float]
    lost_writes: int

    def as_json(self) -> dict[str, object]:
        # Rebalancing is not built yet; the key stays so the output keeps its shape.
        return {**self.__dict__, "rebalance_s": None}


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


def _p99(samples: list[float]) -> float:
    return (
        statistics.quantiles(samples, n=100, method="inclusive")[98]
        if len(samples) > 1
        else samples[0]
    )


async def _run(
    kills: int, ttl_s: int, work_dir: Path, progress: Progress | None
) -> CoordinatorBench:
    etcd = EtcdCluster(work_dir / "etcd")
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
    finally:
        for replica in replicas:
            await replica.channel.close()
            replica.process.stop()
        etcd.stop()
    return CoordinatorBench(
        kills=kills,
        lease_ttl_s=ttl_s,
        failover_s={
            "p50": round(statistics.median(failovers), 3),
            "p99": round(_p99(failovers), 3),
            "max": round(max(failovers), 3),
        },
        lost_writes=lost,
    )


def run(kills: int, ttl_s: int = 2, progress: Progress | None = None) -> CoordinatorBench:
    with tempfile.TemporaryDirectory(prefix="bigfleet-bench-coord-") as tmp:
        return asyncio.run(_run(kills, ttl_s, Path(tmp), progress))
