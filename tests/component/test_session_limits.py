"""What one operator can make a shard hold, and how refusals end only their own stream."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from bigfleet.shard.runtime.service import ShardService
from bigfleet.wire import provider_pb2, shard_pb2
from tests.component.harness import eventually, need, rig

SESSION = "/bigfleet.v1alpha1.Shard/Session"
CONFIGURED = provider_pb2.MACHINE_STATE_CONFIGURED


def _series(shard: ShardService) -> int:
    return sum(
        1
        for line in generate_latest(shard.registry).decode().splitlines()
        if line and not line.startswith("#")
    )


def _rejected(shard: ShardService, reason: str) -> float:
    return float(shard.metrics.session_rejected.labels(reason)._value.get())


async def _raw(shard: ShardService, *frames: bytes) -> tuple[grpc.StatusCode, str]:
    """Send raw bytes as Session frames; the final status and its details."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{shard.port}") as channel:
        call = channel.stream_stream(
            SESSION,
            request_serializer=lambda b: b,
            response_deserializer=shard_pb2.ShardMessage.FromString,
        )(iter(frames))
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return await call.code(), await call.details()


def _hello(cluster: str) -> bytes:
    return shard_pb2.OperatorMessage(hello=shard_pb2.Hello(cluster_id=cluster)).SerializeToString()


async def test_garbage_frames_are_invalid_argument_without_internal_names(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        shard = await r.start_shard()
        code, details = await _raw(shard, b"\xff\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "frame 1 is not a valid OperatorMessage"
        code, details = await _raw(shard, _hello("c1"), b"\x0a\x05garbage")
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "frame 2 is not a valid OperatorMessage"
        code, _ = await _raw(shard)  # a stream that ends before its Hello is refused too
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert _rejected(shard, "undecodable") == 2
        assert _rejected(shard, "no_hello") == 1
        assert shard.channels.connected() == []


@pytest.mark.parametrize(
    "cluster", ["x" * 254, "Upper", "under_score", "-lead", "a..b", "é", "a b"]
)
async def test_hello_cluster_ids_must_be_dns1123_subdomains(tmp_path: Path, cluster: str) -> None:
    async with rig(tmp_path) as r:
        shard = await r.start_shard()
        code, details = await _raw(shard, _hello(cluster))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "DNS-1123" in details and len(details) < 300
        assert _rejected(shard, "invalid_cluster_id") == 1
        assert len(shard.channels) == 0


async def test_frame_limit_and_unexpected_failures_end_only_their_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path, idle=2) as r:
        shard = await r.start_shard(max_frame_bytes=4096)
        good = r.operator("good")
        good.start()
        await eventually(lambda: good.frames("ack"), what="hello acknowledged")
        big = shard_pb2.OperatorMessage(
            hello=shard_pb2.Hello(cluster_id="big", protocol_version="v" * 5000)
        ).SerializeToString()
        code, details = await _raw(shard, big)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4096" in details

        def boom(cluster: str, needs: object) -> None:
            raise RuntimeError("a bug of the shard's own")

        original = shard.state.commit_rollup
        shard.state.commit_rollup = boom  # type: ignore[method-assign]
        broken = r.operator("broken")
        broken.start()
        broken.rollup(need(8))
        # The level on the channels' own logger: a log set-up made earlier in the run
        # (another command's --log-level) must not hide the record.
        with caplog.at_level(logging.WARNING, logger="bigfleet.shard.runtime.channels"):
            await eventually(lambda: broken.status is not None, what="the broken stream ended")
        assert broken.status == grpc.StatusCode.INTERNAL
        refused = [
            rec
            for rec in caplog.records
            if rec.getMessage() == "session refused" and getattr(rec, "cluster", "") == "broken"
        ]
        assert len(refused) == 1 and refused[0].exc_info is not None  # once, with traceback
        assert _rejected(shard, "internal") == 1
        shard.state.commit_rollup = original  # type: ignore[method-assign]
        good.rollup(need(8))
        await eventually(
            lambda: any(m.cluster == "good" for m in r.fleet.list().machines),
            what="the good cluster still served",
        )
        assert good.status is None
        await good.close()


async def test_the_cluster_cap_answers_resource_exhausted(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        shard = await r.start_shard(max_clusters=3)
        ops = [r.operator(f"c{i}") for i in range(3)]
        for op in ops:
            op.start()
        await eventually(lambda: len(shard.channels.connected()) == 3, what="three connected")
        code, details = await _raw(shard, _hello("c3"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3 clusters" in details
        assert _rejected(shard, "too_many_clusters") == 1
        again = r.operator("c0")  # a cluster already held is not one more
        again.start()
        await eventually(lambda: ops[0].status is not None, what="c0's first stream replaced")
        assert ops[0].status == grpc.StatusCode.ABORTED
        for op in [*ops[1:], again]:
            await op.close()


async def test_forgotten_clusters_return_metrics_to_the_baseline(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=0) as r:
        shard = await r.start_shard(cluster_retention_s=3600.0, max_clusters=1000)
        warm = [r.operator("warm-a"), r.operator("warm-b")]  # every fixed series exists
        for op in warm:
            op.start()
        warm[0].rollup(need(8))
        warm[1].rollup(need(8, interruption_penalty_bucket=99))
        await eventually(lambda: warm[1].status is not None and warm[0].frames("ack"), what="warm")
        for op in warm:
            await op.close()
        await eventually(lambda: not shard.channels.connected(), what="warm-up disconnected")
        shard.channels.retention_s = 0.0
        shard.channels.sweep()
        shard.channels.retention_s = 3600.0
        baseline = _series(shard)
        ops = [r.operator(f"fleet-{i:03d}") for i in range(200)]
        for i, op in enumerate(ops):
            op.start()
            if i % 2:
                op.rollup(need(8, interruption_penalty_bucket=99))  # refused: a labelled series
            else:
                op.rollup(need(8))
        await eventually(
            lambda: all(op.status is not None or op.frames("ack") for op in ops),
            timeout_s=30,
            what="every stream answered",
        )
        for op in ops:
            await op.close()
        await eventually(lambda: not shard.channels.connected(), what="all disconnected")
        assert _series(shard) > baseline + 100
        assert len(shard.channels) >= 200
        assert shard.channels.sweep() == []  # within the retention nothing is forgotten
        shard.channels.retention_s = 0.0  # as a tiny --cluster-retention would be
        forgotten = shard.channels.sweep()
        assert len(forgotten) >= 200
        assert len(shard.channels) == 0
        assert all(not shard.state.table.rows(f"fleet-{i:03d}") for i in range(200))
        assert _series(shard) == baseline
        assert shard.metrics.clusters_forgotten._value.get() >= 200
        text = generate_latest(shard.registry).decode()
        assert not re.search(r'cluster="fleet-', text)


async def test_the_cycle_sweeps_and_a_forgotten_cluster_keeps_its_machines(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, idle=2) as r:
        shard = await r.start_shard(cluster_retention_s=0.3)
        op = r.operator("keeper")
        op.start()
        op.rollup(need(8))
        await eventually(
            lambda: any(
                m.cluster == "keeper" and m.state == CONFIGURED for m in r.fleet.list().machines
            ),
            what="a machine configured for keeper",
        )
        await op.close()
        await eventually(lambda: "keeper" not in shard.channels, what="forgotten by a cycle")
        assert "keeper" not in shard.state.reported
        cycles = shard.cycles
        await eventually(lambda: shard.cycles >= cycles + 3, what="more cycles")
        await asyncio.sleep(0)
        kept = [m for m in r.fleet.list().machines if m.cluster == "keeper"]
        assert len(kept) == 1 and kept[0].state == CONFIGURED  # still Configured, not reclaimed


async def test_a_large_rollup_does_not_hold_up_another_clusters_hello(tmp_path: Path) -> None:
    """Decoding 40,000 needs takes on the order of a second; the shard hands its event
    loop back between slices, so another cluster connects while the decode goes on."""
    async with rig(tmp_path) as r:
        shard = await r.start_shard()
        big = r.operator("big")
        big.start()
        await eventually(lambda: big.frames("ack"), what="big's Hello acknowledged")
        decoding = asyncio.Event()
        decode = shard.state.decode_rollup

        async def watched(rollup: object) -> object:
            decoding.set()
            return await decode(rollup)  # type: ignore[arg-type]

        shard.state.decode_rollup = watched  # type: ignore[method-assign,assignment]
        big.rollup(*[need(8)] * 40_000)
        await asyncio.wait_for(decoding.wait(), 10)
        other = r.operator("other")
        other.start()
        await eventually(lambda: other.frames("ack"), what="other's Hello acknowledged")

        def rollup_acked() -> bool:
            return any(f.ack.echo == "rollup" for f in big.frames("ack"))

        assert not rollup_acked() and shard.state.table.rows("big") == ()
        await eventually(rollup_acked, timeout_s=60, what="the large roll-up acknowledged")
        assert len(shard.state.table.rows("big")) == 40_000
        await big.close()
        await other.close()
