"""A coordinator leader stopped by SIGTERM exits 0 and releases its etcd lease, so a
standby leads at once rather than after the lease's TTL runs out."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bigfleet.bench.coordinator import CoordinatorProcess
from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.wire import coordinator_pb2 as pb

TTL_S = 60  # a takeover that waited for the lease to expire would take all of it


async def _leader(replicas: list[CoordinatorProcess], shard_id: str) -> CoordinatorProcess:
    while True:
        for replica in replicas:
            if await replica.write(shard_id):
                return replica
        await asyncio.sleep(0.05)


async def test_a_leader_stopped_by_sigterm_hands_over_at_once(tmp_path: Path) -> None:
    etcd = EtcdCluster(tmp_path / "etcd", size=1)
    etcd.start()
    endpoint = f"127.0.0.1:{etcd.client_ports[0]}"
    replicas = [CoordinatorProcess(f"coord-{i}", endpoint, tmp_path, TTL_S) for i in range(2)]
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        leader = await asyncio.wait_for(_leader(replicas, "before"), 60)
        code = await asyncio.to_thread(leader.process.terminate, 30)
        assert code == 0, leader.process.log_tail()
        standby = [r for r in replicas if r is not leader]
        # Bounded at half the TTL: only a released lease lets the standby in that soon.
        successor = await asyncio.wait_for(_leader(standby, "after"), TTL_S / 2)
        listed = await successor.stub.ListShards(pb.ListShardsRequest(), timeout=5)
        assert {"before", "after"} <= {s.shard_id for s in listed.shards}
    finally:
        for replica in replicas:
            await replica.channel.close()
            replica.process.stop()
        etcd.stop()
