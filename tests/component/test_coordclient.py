"""The shard's coordinator client: reports, term fencing, and life without a coordinator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from bigfleet.controlplane.process import free_port
from bigfleet.shard.coordclient import CoordinatorClient
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc, provider_pb2
from tests.component.harness import TYPE, eventually, need, rig

Outcome = pb.InstructAck.Outcome


class ScriptedCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """Records every report and answers with the next scripted reply."""

    def __init__(self, replies: list[pb.ReportAck], follower: bool = False) -> None:
        self.replies = replies
        self.follower = follower
        self.reports: list[pb.ShardReport] = []

    async def ReportShard(
        self, request: pb.ShardReport, context: grpc.aio.ServicerContext
    ) -> pb.ReportAck:
        self.reports.append(request)
        if self.follower:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the leader")
        return self.replies.pop(0) if self.replies else pb.ReportAck(acknowledged=True)


def instruction(term: int, instruction_id: str) -> pb.CoordinatorInstruction:
    return pb.CoordinatorInstruction(
        coordinator_term=term,
        sequence_number=1,
        instruction_id=instruction_id,
        assign_domain=pb.AssignDomain(
            topology_key="topology.kubernetes.io/zone", topology_value="zone-a"
        ),
    )


async def test_reports_describe_the_shard_and_instructions_are_fenced_by_term(
    tmp_path: Path,
) -> None:
    replies = [
        pb.ReportAck(
            coordinator_term=5,
            acknowledged=True,
            instructions=[instruction(4, "old-leader"), instruction(5, "current")],
        ),
        # A deposed coordinator answers late: its whole reply is ignored.
        pb.ReportAck(
            coordinator_term=3, acknowledged=True, instructions=[instruction(3, "zombie")]
        ),
    ]
    coordinator = ScriptedCoordinator(replies)
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(coordinator, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with rig(tmp_path, idle=4) as r:
            shard = await r.start_shard()
            op = r.operator("c1")
            op.start()
            op.rollup(need(64))  # 8 machines wanted, 4 exist: a shortfall
            await eventually(lambda: len(shard.shortfalls) > 0, what="a shortfall")
            client = CoordinatorClient(
                f"127.0.0.1:{port}", shard, interval_s=0.05, handler=shard.instructions.handle
            )
            running = asyncio.create_task(client.run())
            await eventually(lambda: len(coordinator.reports) >= 4, what="four reports")
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await op.close()
    finally:
        await server.stop(None)

    first, second, third = coordinator.reports[:3]
    assert first.shard_id == "shard-test" and first.shard_epoch == shard.epoch
    assert first.summary.total_machines == 4
    assert first.summary.per_instance_type_counts[TYPE] == 4
    assert first.summary.provider_address == r.provider_address
    assert first.shortfalls and first.shortfalls[0].priority == 100
    assert first.shortfalls[0].deficit.resources["cpu"] == "32"  # 64 wanted, 4 x 8 placed
    assert not first.instruction_acks
    outcomes = {a.instruction_id: a.outcome for a in second.instruction_acks}
    assert outcomes == {
        "old-leader": Outcome.OUTCOME_REJECTED_STALE,
        "current": Outcome.OUTCOME_ACCEPTED,  # the shard now owns zone-a by name
    }
    assert not third.instruction_acks  # the term-3 reply was dropped whole
    assert client.fence.high_water == 5


async def test_with_no_coordinator_the_shard_keeps_provisioning(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=4) as r:
        shard = await r.start_shard()
        nobody = f"127.0.0.1:{free_port()}"
        client = CoordinatorClient(nobody, shard, interval_s=0.05)
        running = asyncio.create_task(client.run())
        op = r.operator("c1")
        op.start()
        op.rollup(need(16))
        configured = provider_pb2.MACHINE_STATE_CONFIGURED
        await eventually(
            lambda: sum(m.state == configured for m in r.fleet.list().machines) == 2,
            what="2 machines Configured with the coordinator unreachable",
        )
        assert client.reports_acknowledged == 0
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await op.close()


async def test_the_client_finds_the_leader_among_the_replicas_it_is_given(
    tmp_path: Path,
) -> None:
    follower, leader = ScriptedCoordinator([], follower=True), ScriptedCoordinator([])
    servers, addresses = [], []
    for coordinator in (follower, leader):
        server = grpc.aio.server()
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server(coordinator, server)
        addresses.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        await server.start()
        servers.append(server)
    try:
        async with rig(tmp_path, idle=1) as r:
            shard = await r.start_shard()
            dead = f"127.0.0.1:{free_port()}"  # a replica that is down comes first
            client = CoordinatorClient(",".join([dead, *addresses]), shard, interval_s=0.05)
            running = asyncio.create_task(client.run())
            await eventually(lambda: len(leader.reports) >= 3, what="reports reach the leader")
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    finally:
        for server in servers:
            await server.stop(None)
    assert len(follower.reports) == 1  # refused once, then the client stays with the leader
    assert client.reports_acknowledged >= 3
