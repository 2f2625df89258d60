"""Rebalancing end to end: a coordinator on real etcd moves machines between two live shards.

Domains are given through the coordinator's AssignDomain RPC; shards hear
everything through their coordinator clients, as in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aetcd
import grpc

from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.coordinator.election import Election
from bigfleet.coordinator.rebalance import RebalanceSettings
from bigfleet.coordinator.service import CoordinatorService
from bigfleet.coordinator.store import EtcdStateReader
from bigfleet.providers_fake.config import LatencyConfig
from bigfleet.shard.coordclient import CoordinatorClient
from bigfleet.shard.engine.machine import ZONE_KEY
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc, provider_pb2
from tests.component.harness import Pair, eventually, need, operator, two_shards

FAST = RebalanceSettings(interval_s=0.2, min_age_cycles=2, drain_age_cycles=4, cooldown_s=1.0)


@dataclass
class Fleet:
    pair: Pair
    service: CoordinatorService
    stub: coordinator_pb2_grpc.CoordinatorStub

    def configured_for(self, cluster: str) -> set[str]:
        return {
            m.id
            for m in self.pair.fleet.list().machines
            if m.cluster == cluster and m.state == provider_pb2.MACHINE_STATE_CONFIGURED
        }

    def moves(self, tier: str) -> float:
        value: float = self.service.metrics.rebalance_moves.labels(tier)._value.get()
        return value

    def disjoint(self) -> bool:
        return not self.pair.owned("donor") & self.pair.owned("recipient")


@asynccontextmanager
async def fleet(
    etcd: EtcdCluster, tmp_path: Path, scope: str, latency: LatencyConfig | None = None
) -> AsyncIterator[Fleet]:
    client = aetcd.Client(host="127.0.0.1", port=etcd.client_ports[0])
    await client.connect()
    election = Election(client, "c-0", ttl_s=2, key=f"/bigfleet/test/{scope}/leader".encode())
    state = EtcdStateReader(client, f"/bigfleet/test/{scope}/".encode())
    service = CoordinatorService(election, state, rebalance=FAST)
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    leading = asyncio.create_task(service.lead_forever())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    reporting: list[asyncio.Task[None]] = []
    try:
        async with two_shards(tmp_path, latency) as pair:
            for shard in pair.shards.values():
                reporter = CoordinatorClient(
                    f"127.0.0.1:{port}", shard, interval_s=0.1, handler=shard.instructions.handle
                )
                reporting.append(asyncio.create_task(reporter.run()))
            await eventually(lambda: len(service.reports) == 2, what="both shards registered")
            for shard_id, zone in (("donor", "zone-a"), ("recipient", "zone-b")):
                await stub.AssignDomain(
                    pb.AssignDomainRequest(
                        topology_key=ZONE_KEY, topology_value=zone, shard_id=shard_id
                    )
                )
            await eventually(lambda: len(pair.owned("donor")) == 4, what="zone-a owned")
            await eventually(lambda: len(pair.owned("recipient")) == 4, what="zone-b owned")
            yield Fleet(pair, service, stub)
    finally:
        for task in [*reporting, leading]:
            task.cancel()
        await asyncio.gather(*reporting, leading, return_exceptions=True)
        await election.resign()
        await channel.close()
        await server.stop(None)
        await client.close()


async def test_idle_machines_move_to_the_shard_with_a_shortfall(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    async with fleet(etcd, tmp_path, "idle") as f:
        op = operator(f.pair.shards["recipient"], "b")
        op.start()
        # Zone b has 2 idle machines and 2 quota slots; 6 machines are wanted.
        op.rollup(need(48))
        await eventually(
            lambda: len(f.configured_for("b")) == 6,
            timeout_s=30,
            what="6 machines serving cluster b, 2 of them from the zone-a shard",
        )
        assert len(f.configured_for("b") & {f"a-{i}" for i in range(4)}) == 2
        assert f.disjoint()
        # The recipient may bind a claimed machine before its claim's ack reaches the leader.
        await eventually(lambda: f.moves("idle") >= 1, what="the idle move counted")
        allocations = (await f.stub.ListProviders(pb.ListProvidersRequest())).providers
        assert [p.address for p in allocations] == [f.pair.provider_address]
        await op.close()


async def test_a_higher_priority_shortfall_drains_machines_from_another_shard(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    async with fleet(etcd, tmp_path, "drain", LatencyConfig(draining=0.3)) as f:
        low = operator(f.pair.shards["donor"], "a")
        low.start()
        low.rollup(need(32, priority=10))  # every zone-a machine, low priority
        await eventually(lambda: len(f.configured_for("a")) == 4, what="zone a bound")
        high = operator(f.pair.shards["recipient"], "b")
        high.start()
        high.rollup(need(48, priority=1000))  # 2 more than zone b can give
        await eventually(
            lambda: len(f.configured_for("b")) == 6,
            timeout_s=30,
            what="2 low-priority machines of cluster a drained and bound to cluster b",
        )
        assert len(f.configured_for("a")) == 2
        assert f.disjoint()
        # The recipient may bind a claimed machine before its claim's ack reaches the leader.
        await eventually(lambda: f.moves("drain") >= 1, what="the drain move counted")
        snapshot = [c async for c in f.stub.SnapshotSave(pb.SnapshotSaveRequest())]
        assert snapshot[0].WhichOneof("payload") == "meta_json"
        assert b"domains/" in b"".join(c.data for c in snapshot[1:])
        await low.close()
        await high.close()
