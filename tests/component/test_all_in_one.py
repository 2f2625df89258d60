"""`bigfleet all-in-one`: one process serves demand with no etcd, and keeps its state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
import pytest

from bigfleet import tls
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok
from bigfleet.tls import Credentials, TLSFiles
from bigfleet.wire import (
    GRPC_OPTIONS,
    capacity_pb2,
    coordinator_pb2,
    coordinator_pb2_grpc,
    shard_pb2_grpc,
)
from tests.component.harness import Operator, eventually
from tests.support import identities
from tests.support.waiting import until


class AllInOne:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.ports = {k: free_port() for k in ("shard", "coord", "provider", "sm", "cm")}
        argv = [
            sys.executable, "-m", "bigfleet.cli", "--log-level", "warning", "all-in-one",
            "--shard-listen", f"127.0.0.1:{self.ports['shard']}",
            "--coordinator-listen", f"127.0.0.1:{self.ports['coord']}",
            "--provider-listen", f"127.0.0.1:{self.ports['provider']}",
            "--shard-metrics-port", str(self.ports["sm"]),
            "--coordinator-metrics-port", str(self.ports["cm"]),
            "--data-dir", str(data_dir), "--cycle-interval", "0.2", "--report-interval", "0.2",
            *extra,
        ]  # fmt: skip
        self.process = ManagedProcess("all-in-one", argv, data_dir.parent / "all-in-one.log")

    def start(self) -> None:
        self.process.start()
        for port in (self.ports["sm"], self.ports["cm"]):
            self.process.wait_ready(lambda p=port: http_ok(f"http://127.0.0.1:{p}/readyz"), 60)

    def coordinator(
        self, credentials: Credentials | None = None
    ) -> tuple[grpc.aio.Channel, coordinator_pb2_grpc.CoordinatorStub]:
        channel = tls.channel(f"127.0.0.1:{self.ports['coord']}", credentials)
        return channel, coordinator_pb2_grpc.CoordinatorStub(channel)


def small(count: int) -> capacity_pb2.CapacityNeed:
    return capacity_pb2.CapacityNeed(
        requirements=[
            capacity_pb2.NodeSelectorRequirement(
                key="node.kubernetes.io/instance-type",
                operator=capacity_pb2.NodeSelectorRequirement.OPERATOR_IN,
                values=["m6i.large"],
            )
        ],
        aggregate_resources={"cpu": str(2 * count)},
        min_unit={"cpu": "2"},
        priority=100,
    )


async def test_all_in_one_serves_demand_and_keeps_its_state_across_a_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    node = AllInOne(data)
    node.start()
    try:
        channel, coordinator = node.coordinator()
        reports = await _wait_for_report(coordinator)
        assert reports.summary.total_machines == 16  # the demo fleet: 8 GPU + 8 small
        listed = await coordinator.ListShards(coordinator_pb2.ListShardsRequest())
        registered = {s.shard_id: s.registered_at_unix_ns for s in listed.shards}
        assert list(registered) == ["shard-0"]

        shard_channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{node.ports['shard']}", options=GRPC_OPTIONS
        )
        op = Operator("demo", shard_pb2_grpc.ShardStub(shard_channel))
        op.start()
        op.rollup(small(3))
        await eventually(
            lambda: sum(s == 5 for s in op.node_states().values()) == 3,  # 5 = CONFIGURED
            timeout_s=30,
            what="3 small machines configured for the demo cluster",
        )
        await op.close()
        await shard_channel.close()
        await channel.close()
    finally:
        node.process.stop()

    saved = json.loads((data / "coordinator" / "coordinator-state.json").read_text())
    first_term = saved["term"]
    node = AllInOne(data)  # same data directory, new ports
    node.start()
    try:
        channel, coordinator = node.coordinator()
        await _wait_for_report(coordinator)
        listed = await coordinator.ListShards(coordinator_pb2.ListShardsRequest())
        assert {s.shard_id: s.registered_at_unix_ns for s in listed.shards} == registered
        await channel.close()
    finally:
        node.process.stop()
    saved = json.loads((data / "coordinator" / "coordinator-state.json").read_text())
    assert saved["term"] == first_term + 1  # a fresh term per start, on disk before use


async def test_all_in_one_with_mutual_tls_speaks_as_one_shard(tmp_path: Path) -> None:
    certs = identities.issue(tmp_path / "certs")
    node = AllInOne(tmp_path / "data", *identities.flags(certs, "shard/shard-0"))
    node.start()
    try:
        # Its shard reported to its coordinator over mTLS, as bigfleet://shard/shard-0.
        admin = Credentials(
            TLSFiles(*(certs / "admin" / n for n in ("tls.crt", "tls.key", "ca.crt")))
        )
        channel, coordinator = node.coordinator(admin)
        report = await _wait_for_report(coordinator)
        assert report.summary.total_machines == 16
        await channel.close()
        plain, stranger = node.coordinator()
        with pytest.raises(grpc.aio.AioRpcError):
            await stranger.ListShards(coordinator_pb2.ListShardsRequest(), timeout=5)
        await plain.close()
    finally:
        node.process.stop()


async def _wait_for_report(
    coordinator: coordinator_pb2_grpc.CoordinatorStub,
) -> coordinator_pb2.ShardReportSnapshot:
    found: list[coordinator_pb2.ShardReportSnapshot] = []

    async def probe() -> bool:
        reply = await coordinator.ListShardReports(coordinator_pb2.ListShardReportsRequest())
        found[:] = [r for r in reply.reports if r.summary.total_machines]
        return bool(found)

    await until(probe, "a shard report with machines", 30)
    return found[0]
