"""A coordinator leader stopped by SIGTERM exits 0 and revokes its etcd lease (the
election key is gone as it exits), so a standby need not wait out the TTL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aetcd

from bigfleet.bench.coordinator import CoordinatorProcess
from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.coordinator.store import ELECTION_KEY
from bigfleet.wire import coordinator_pb2 as pb

TTL_S = 60  # long enough that an unreleased lease would still hold the key


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
        # Its lease was revoked on the way out: the election key went with it at once,
        # where a lease left to expire would keep it for the whole TTL.
        client = aetcd.Client(host="127.0.0.1", port=etcd.client_ports[0])
        try:
            held = await client.get(ELECTION_KEY)
        finally:
            await client.close()
        assert held is None or held.value.decode() != leader.process.name, "lease not released"
        standby = [r for r in replicas if r is not leader]
        successor = await asyncio.wait_for(_leader(standby, "after"), 2 * TTL_S)
        listed = await successor.stub.ListShards(pb.ListShardsRequest(), timeout=5)
        assert {"before", "after"} <= {s.shard_id for s in listed.shards}
    finally:
        for replica in replicas:
            await replica.channel.close()
            replica.process.stop()
        etcd.stop()
