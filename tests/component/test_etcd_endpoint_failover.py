"""A coordinator whose etcd member dies moves to another member and keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bigfleet.bench.coordinator import CoordinatorProcess
from bigfleet.controlplane.etcd_cluster import EtcdCluster
from tests.support.waiting import until


async def test_losing_its_etcd_member_moves_the_replica_to_another(tmp_path: Path) -> None:
    etcd = EtcdCluster(tmp_path / "etcd")
    etcd.start()
    # The replica lists member 2 first, so that is the one it talks to.
    order = (2, 0, 1)
    endpoints = ",".join(f"127.0.0.1:{etcd.client_ports[i]}" for i in order)
    replica = CoordinatorProcess("coord-0", endpoints, tmp_path, ttl_s=2)
    try:
        await replica.start(ready="/readyz")
        assert await until(lambda: replica.write("before"), "a write before", 30)
        etcd.kill(2)
        assert await until(
            lambda: replica.write("after"), "a write acknowledged through another member", 60
        )
        assert replica.process.running
        assert "moving to another etcd endpoint" in replica.process.log_tail(200)
    finally:
        await replica.channel.close()
        replica.process.stop()
        await asyncio.to_thread(etcd.stop)
