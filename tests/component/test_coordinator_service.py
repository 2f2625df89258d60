"""Two coordinator replicas over gRPC on a real three-member etcd cluster."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aetcd
import grpc
import pytest
from click.testing import CliRunner, Result

from bigfleet.bench.coordinator import CoordinatorProcess
from bigfleet.cli import main
from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.controlplane.process import free_port
from bigfleet.coordinator.election import Election
from bigfleet.coordinator.service import CoordinatorService
from bigfleet.coordinator.store import EtcdStateReader
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc
from tests.support.waiting import until


@dataclass
class Replica:
    name: str
    client: aetcd.Client
    service: CoordinatorService
    server: grpc.aio.Server
    leading: asyncio.Task[None]
    stub: coordinator_pb2_grpc.CoordinatorStub
    server_port: int
    channel: grpc.aio.Channel
    stopped: bool = False

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.leading.cancel()
        await asyncio.gather(self.leading, return_exceptions=True)
        await self.service.election.resign()
        await self.channel.close()
        await self.server.stop(None)
        await self.client.close()


async def start_replica(name: str, etcd_port: int, scope: str) -> Replica:
    client = aetcd.Client(host="127.0.0.1", port=etcd_port)
    await client.connect()
    election = Election(client, name, ttl_s=2, key=f"/bigfleet/test/{scope}/leader".encode())
    service = CoordinatorService(
        election, EtcdStateReader(client, f"/bigfleet/test/{scope}/".encode())
    )
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(service, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    leading = asyncio.create_task(service.lead_forever())
    return Replica(
        name,
        client,
        service,
        server,
        leading,
        coordinator_pb2_grpc.CoordinatorStub(channel),
        port,
        channel,
    )


@pytest.fixture
async def replicas(
    etcd: EtcdCluster, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Replica, Replica]]:
    a = await start_replica("coord-a", etcd.client_ports[0], request.node.name)
    await until(lambda: a.service.store is not None, "coord-a leads", 20)  # then b follows
    b = await start_replica("coord-b", etcd.client_ports[1], request.node.name)
    yield a, b
    for replica in (b, a):
        await replica.stop()


def report(shard_id: str, cycle: int = 1) -> pb.ShardReport:
    return pb.ShardReport(
        shard_id=shard_id,
        cycle=cycle,
        shard_address=f"{shard_id}.shards:7780",
        summary=pb.ShardSummary(
            total_machines=10, free_machines=4, provider_address="fake.providers:7800"
        ),
    )


async def test_reports_register_shards_on_the_leader_and_followers_name_it(
    replicas: tuple[Replica, Replica],
) -> None:
    leader, follower = replicas
    ack = await leader.stub.ReportShard(report("shard-0"))
    assert ack.acknowledged and ack.coordinator_term > 0

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await follower.stub.ReportShard(report("shard-0"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "coord-a" in (refused.value.details() or "")

    await leader.stub.ReportShard(report("shard-0", cycle=2))  # a heartbeat, not a duplicate
    listed = (await follower.stub.ListShards(pb.ListShardsRequest())).shards
    assert [(s.shard_id, s.address) for s in listed] == [("shard-0", "shard-0.shards:7780")]
    assert listed[0].last_heartbeat_unix_ns > listed[0].registered_at_unix_ns
    snapshots = (await leader.stub.ListShardReports(pb.ListShardReportsRequest())).reports
    assert [(r.shard_id, r.cycle, r.summary.free_machines) for r in snapshots] == [
        ("shard-0", 2, 4)
    ]

    # The provider the shard reports is registered; any replica reads the tables.
    providers = (await follower.stub.ListProviders(pb.ListProvidersRequest())).providers
    assert [(p.name, p.address) for p in providers] == [("fake.providers:7800",) * 2]
    assert not (await follower.stub.ListQuotas(pb.ListQuotasRequest())).allocations

    with pytest.raises(grpc.aio.AioRpcError) as unimplemented:  # membership is etcd's
        await leader.stub.JoinRaftCluster(pb.JoinRaftClusterRequest(node_id="x"))
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_domain_ownership_rules_and_removal_cascade(
    replicas: tuple[Replica, Replica],
) -> None:
    leader, follower = replicas
    for shard in ("shard-0", "shard-1"):
        await leader.stub.ReportShard(report(shard))
    zone = ("topology.kubernetes.io/zone", "eu-1a")

    async def assign(shard_id: str, key: str = zone[0], value: str = zone[1]) -> None:
        await leader.stub.AssignDomain(
            pb.AssignDomainRequest(topology_key=key, topology_value=value, shard_id=shard_id)
        )

    await assign("shard-0")
    await assign("shard-0")  # the owner again: idempotent
    await assign("shard-1", value="eu-1b")
    for shard, code in (
        ("shard-1", "ALREADY_EXISTS"),
        ("shard-9", "NOT_FOUND"),
        ("", "INVALID_ARGUMENT"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await assign(shard)
        assert refused.value.code().name == code

    listed = (
        await follower.stub.ListDomainAssignments(pb.ListDomainAssignmentsRequest())
    ).assignments
    assert [(a.topology_value, a.shard_id) for a in listed] == [
        ("eu-1a", "shard-0"),
        ("eu-1b", "shard-1"),
    ]

    await leader.stub.RemoveShard(pb.RemoveShardRequest(shard_id="shard-0"))
    listed = (
        await follower.stub.ListDomainAssignments(pb.ListDomainAssignmentsRequest())
    ).assignments
    assert [(a.topology_value, a.shard_id) for a in listed] == [("eu-1b", "shard-1")]
    shards = (await follower.stub.ListShards(pb.ListShardsRequest())).shards
    assert [s.shard_id for s in shards] == ["shard-1"]


async def test_after_failover_the_new_leader_has_every_acknowledged_write(
    replicas: tuple[Replica, Replica],
) -> None:
    leader, follower = replicas
    acked = []
    for i in range(20):
        await leader.stub.ReportShard(report(f"shard-{i:02}"))
        acked.append(f"shard-{i:02}")
    old_term = (await leader.stub.ReportShard(report("shard-00", cycle=2))).coordinator_term

    await leader.stop()  # resigns: the follower may take over at once
    await until(lambda: follower.service.store is not None, "coord-b leads", 10)
    ack = await follower.stub.ReportShard(report("shard-00", cycle=3))
    assert ack.coordinator_term > old_term
    shards = (await follower.stub.ListShards(pb.ListShardsRequest())).shards
    assert [s.shard_id for s in shards] == acked
    # Soft state starts empty after a failover: only the report sent since.
    reports = (await follower.stub.ListShardReports(pb.ListShardReportsRequest())).reports
    assert [r.shard_id for r in reports] == ["shard-00"]


async def test_coordinator_processes_fail_over_when_the_leader_is_killed(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    endpoints = ",".join(f"127.0.0.1:{p}" for p in etcd.client_ports)
    first, second = (CoordinatorProcess(n, endpoints, tmp_path, 2) for n in ("coord-0", "coord-1"))
    try:
        await first.start(ready="/readyz")  # coord-0 leads before coord-1 exists
        await second.start()
        ack = await first.stub.ReportShard(report("shard-a"))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{first.metrics_port}/metrics").read()
        assert f"bigfleet_coordinator_raft_term {ack.coordinator_term}.0".encode() in metrics
        assert b'bigfleet_coordinator_apply_total{outcome="success"} 1.0' in metrics

        first.process.kill()  # SIGKILL: no resignation, the lease has to lapse
        await until(lambda: second.write("shard-b"), "coord-1 leads", 10)
        shards = (await second.stub.ListShards(pb.ListShardsRequest())).shards
        assert [s.shard_id for s in shards] == ["shard-a", "shard-b"]
    finally:
        for replica in (first, second):
            await replica.channel.close()
            replica.process.stop()


async def test_ctl_administers_through_whichever_replica_leads(
    replicas: tuple[Replica, Replica],
) -> None:
    leader, follower = replicas
    await leader.stub.ReportShard(report("shard-0"))
    # The follower is named first: writes must find the leader on their own.
    addresses = ",".join(f"127.0.0.1:{r.server_port}" for r in (follower, leader))

    async def ctl(*args: str) -> Result:
        return await asyncio.to_thread(
            CliRunner().invoke, main, ["ctl", "--coordinator", addresses, *args]
        )

    zone = ["--key", "topology.kubernetes.io/zone", "--value", "eu-1a"]
    assigned = await ctl("assign-domain", *zone, "--shard", "shard-0")
    assert assigned.exit_code == 0, assigned.output
    listed = await ctl("list-domain-assignments")
    assert listed.exit_code == 0, listed.output
    assert "topology.kubernetes.io/zone" in listed.output and "shard-0" in listed.output
    shards = await ctl("list-shards")
    assert shards.exit_code == 0, shards.output
    assert shards.output.split()[:4] == ["SHARD", "ADDRESS", "REGISTERED", "LAST_HEARTBEAT"]
    assert "shard-0.shards:7780" in shards.output
    refused = await ctl("assign-domain", *zone, "--shard", "shard-9")
    assert refused.exit_code == 1 and "NOT_FOUND" in refused.output
    reports = await ctl("list-shard-reports")  # soft state: the follower passes it on
    assert reports.exit_code == 0, reports.output
    row = next(line.split() for line in reports.output.splitlines() if "shard-0" in line)
    assert row[:2] == ["shard-0", "1"] and row[3:] == ["10", "4", "0"]  # cycle, machines, free
    removed = await ctl("remove-shard", "--shard", "shard-0")
    assert removed.exit_code == 0, removed.output
    after = await ctl("list-domain-assignments")
    assert after.exit_code == 0 and "shard-0" not in after.output


async def test_removing_a_shard_with_more_domains_than_one_etcd_transaction_holds(
    replicas: tuple[Replica, Replica],
) -> None:
    leader, follower = replicas
    await leader.stub.ReportShard(report("shard-0"))
    for rack in range(150):  # etcd refuses transactions of more than 128 operations
        await leader.stub.AssignDomain(
            pb.AssignDomainRequest(
                topology_key="rack", topology_value=f"r{rack}", shard_id="shard-0"
            )
        )
    await leader.stub.RemoveShard(pb.RemoveShardRequest(shard_id="shard-0"))
    listed = await follower.stub.ListDomainAssignments(pb.ListDomainAssignmentsRequest())
    assert list(listed.assignments) == []
    assert list((await follower.stub.ListShards(pb.ListShardsRequest())).shards) == []


async def test_domain_changes_become_instructions_redelivered_until_acknowledged(
    replicas: tuple[Replica, Replica],
) -> None:
    leader, _ = replicas
    term = (await leader.stub.ReportShard(report("shard-0"))).coordinator_term
    zone = {"topology_key": "topology.kubernetes.io/zone", "topology_value": "eu-1a"}
    await leader.stub.AssignDomain(pb.AssignDomainRequest(shard_id="shard-0", **zone))

    first = (await leader.stub.ReportShard(report("shard-0"))).instructions
    assert [
        (i.coordinator_term, i.sequence_number, i.assign_domain.topology_value) for i in first
    ] == [(term, 1, "eu-1a")]
    again = (await leader.stub.ReportShard(report("shard-0"))).instructions
    assert [i.instruction_id for i in again] == [first[0].instruction_id]  # not acked: resent

    failed = pb.InstructAck(
        instruction_id=first[0].instruction_id, outcome=pb.InstructAck.Outcome.OUTCOME_FAILED
    )
    retried = await leader.stub.ReportShard(
        pb.ShardReport(shard_id="shard-0", instruction_acks=[failed])
    )
    assert [i.instruction_id for i in retried.instructions] == [first[0].instruction_id]

    await leader.stub.UnassignDomain(pb.UnassignDomainRequest(**zone))
    accepted = pb.InstructAck(
        instruction_id=first[0].instruction_id, outcome=pb.InstructAck.Outcome.OUTCOME_ACCEPTED
    )
    reply = await leader.stub.ReportShard(
        pb.ShardReport(shard_id="shard-0", instruction_acks=[accepted])
    )
    assert [(i.sequence_number, i.WhichOneof("payload")) for i in reply.instructions] == [
        (2, "unassign_domain")
    ]
    (pending,) = leader.service.metrics.pending.collect()
    assert [(x.labels["shard"], x.value) for x in pending.samples] == [("shard-0", 1.0)]
