"""The shard runtime over real gRPC: scripted operators, the fake provider, the real engine."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from bigfleet.errors import StaleFencingToken
from bigfleet.shard.runtime.provider import ProviderClient
from bigfleet.wire import provider_pb2 as pb
from bigfleet.wire import shard_pb2
from tests.component.harness import eventually, need, rig

CONFIGURED = pb.MACHINE_STATE_CONFIGURED


def _configured_for(fleet, cluster: str) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(
        m.id for m in fleet.list().machines if m.state == CONFIGURED and m.cluster == cluster
    )


async def test_rollup_to_configured_machines_through_bootstrap_blobs(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=4) as r:
        await r.start_shard()
        op = r.operator("c1")
        op.start()
        op.rollup(need(16))  # two 8-CPU machines
        await eventually(lambda: len(_configured_for(r.fleet, "c1")) == 2, what="2 Configured")
        acks = [f.ack.echo for f in op.frames("ack")]
        assert acks[0] == "hello" and "rollup" in acks
        assert len(op.frames("bootstrap_request")) == 2
        await eventually(
            lambda: list(op.node_states().values()).count(CONFIGURED) == 2,
            what="NodeStateUpdate Configured for both",
        )
        machine = r.fleet.get(_configured_for(r.fleet, "c1")[0])
        assert machine.shard_metadata["bigfleet.lucy.sh/assigned-priority"] == "100"
        await op.close()


async def test_a_second_stream_for_a_cluster_replaces_the_first(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        shard = await r.start_shard()
        first = r.operator("c1")
        first.start()
        await eventually(lambda: first.frames("ack"), what="first hello ack")
        second = r.operator("c1")
        second.start()
        await eventually(lambda: first.status is not None, what="first stream closed")
        assert first.status == grpc.StatusCode.ABORTED
        assert shard.channels.connected() == ["c1"]
        await second.close()


async def test_bad_frames_close_only_their_own_stream(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        shard = await r.start_shard()
        good = r.operator("good")
        good.start()
        no_hello = r.operator("x")
        no_hello.start(hello=False)
        no_hello.rollup(need(8))
        bad_rollup = r.operator("bad")
        bad_rollup.start()
        bad_rollup.rollup(need(8, interruption_penalty_bucket=99))
        conflicting = r.operator("c2")
        conflicting.start()
        conflicting.rollup(need(8), cluster="someone-else")
        await eventually(
            lambda: None not in (no_hello.status, bad_rollup.status, conflicting.status),
            what="three streams closed",
        )
        assert no_hello.status == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_rollup.status == grpc.StatusCode.INVALID_ARGUMENT
        assert conflicting.status == grpc.StatusCode.INVALID_ARGUMENT
        assert shard.state.table.rows("bad") == () and shard.state.table.rows("c2") == ()
        good.rollup(need(8))
        await eventually(
            lambda: len(_configured_for(r.fleet, "good")) == 1, what="the good cluster still served"
        )
        assert good.status is None  # still open
        await good.close()


async def test_unanswered_bootstrap_rolls_back_and_is_reissued_on_reconnect(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, idle=1) as r:
        shard = await r.start_shard(bootstrap_timeout_s=30.0)
        silent = r.operator("c1", answer_blobs=False)
        silent.start()
        silent.rollup(need(8))
        await eventually(lambda: silent.frames("bootstrap_request"), what="a bootstrap request")
        request_id = silent.frames("bootstrap_request")[0].bootstrap_request.request_id
        await silent.close()
        answering = r.operator("c1")
        answering.start()
        await eventually(
            lambda: len(_configured_for(r.fleet, "c1")) == 1, what="configured after reconnect"
        )
        reissued = [f.bootstrap_request.request_id for f in answering.frames("bootstrap_request")]
        assert request_id in reissued
        assert shard.metrics.action_outcomes.labels("Bootstrap", "success")._value.get() == 1
        await answering.close()


async def test_blob_timeout_rolls_the_machine_back_to_idle(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=1) as r:
        shard = await r.start_shard(bootstrap_timeout_s=0.3)
        silent = r.operator("c1", answer_blobs=False)
        silent.start()
        silent.rollup(need(8))
        await eventually(
            lambda: (
                shard.metrics.action_outcomes.labels("Bootstrap", "blob_timeout")._value.get() >= 1
            ),
            what="a blob timeout",
        )
        machine = shard.state.inventory.get("idle-0")
        assert machine is not None and machine.state.title in ("Idle", "Configuring")
        assert r.fleet.get("idle-0").state == pb.MACHINE_STATE_IDLE  # provider never touched
        await silent.close()


async def test_restarted_shard_rebuilds_inventory_and_fences_its_predecessor(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, idle=2) as r:
        old = await r.start_shard()
        op = r.operator("c1")
        op.start()
        op.rollup(need(8))
        await eventually(lambda: len(_configured_for(r.fleet, "c1")) == 1, what="bound")
        await op.close()
        await r.stop_shard()

        new = await r.start_shard()
        assert new.epoch == old.epoch + 1
        await eventually(lambda: len(new.state.inventory) == 2, what="inventory rebuilt")
        bound = _configured_for(r.fleet, "c1")[0]
        rebuilt = new.state.inventory.get(bound)
        assert rebuilt is not None and rebuilt.assigned_priority == 100  # from shard_metadata
        await new.providers["fake"].drain(bound, 0)  # the new epoch acts on the machine
        zombie = ProviderClient("fake", r.provider_address, "shard-test", old.epoch)
        with pytest.raises(StaleFencingToken):
            await zombie.configure(bound, "c1", b"", {})  # the predecessor's late call
        await zombie.close()


async def test_reconcile_survives_a_provider_outage_and_forgets_vanished_machines(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, idle=3) as r:
        shard = await r.start_shard()
        await eventually(lambda: len(shard.state.inventory) == 3, what="inventory built")
        await r.stop_provider()
        cycles = shard.cycles
        await eventually(lambda: shard.cycles >= cycles + 2, what="cycles go on without it")
        assert len(shard.state.inventory) == 3  # a failed List removes nothing
        r.fleet.remove_machine("idle-2")
        await r.restart_provider()
        await eventually(lambda: len(shard.state.inventory) == 2, what="vanished machine gone")
        assert shard.reconciler.ready


async def test_available_capacity_hints_follow_demanded_profiles(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=2, speculative=3) as r:
        await r.start_shard()
        op = r.operator("c1")
        op.start()
        op.rollup(need(64))  # more than exists: the hint stays
        await eventually(lambda: op.frames("available_capacity"), what="an AvailableCapacity frame")
        hint = op.frames("available_capacity")[-1].available_capacity
        assert hint.supersedes_key.startswith("available:")
        assert hint.resources.resources["cpu"] == "8"
        assert hint.confidence in (4, 3, 1)
        await op.close()


async def test_a_shape_no_machine_can_hold_is_hinted_none(tmp_path: Path) -> None:
    """The hint fits machines as the engine does: labels and room for the unit. GPUs on a
    fleet without any, or a unit larger than every machine, read NONE with count 0."""
    update = shard_pb2.AvailableCapacityUpdate
    async with rig(tmp_path, idle=2, speculative=3) as r:
        await r.start_shard()
        op = r.operator("c1")
        op.start()

        def hint(**unit: str) -> shard_pb2.AvailableCapacityUpdate | None:
            """The latest hint whose unit is `unit`."""
            found = None
            for frame in op.frames("available_capacity"):
                if dict(frame.available_capacity.resources.resources) == unit:
                    found = frame.available_capacity
            return found

        gpus = need(8, priority=100)
        gpus.aggregate_resources["nvidia.com/gpu"] = "8"
        gpus.min_unit["nvidia.com/gpu"] = "8"
        # Two needs of one profile (priority 50): the larger unit is the hint's.
        huge = need(1000, priority=50)
        huge.min_unit["cpu"] = "1000"
        op.rollup(gpus, huge, need(8, priority=50), need(16, priority=10))
        await eventually(lambda: hint(cpu="8") is not None, what="the plain shape's hint")
        plain = hint(cpu="8")
        assert plain is not None and plain.available_count == 5  # 2 Idle + 3 Speculative
        assert plain.confidence == update.CONFIDENCE_HIGH
        for unit in ({"cpu": "8", "nvidia.com/gpu": "8"}, {"cpu": "1000"}):
            none = hint(**unit)
            assert none is not None, unit
            assert (none.available_count, none.confidence) == (0, update.CONFIDENCE_NONE)
        assert len(op.frames("available_capacity")) == 3  # one hint per profile
        await op.close()


async def test_metrics_and_health_endpoints(tmp_path: Path) -> None:
    import socket

    import aiohttp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with rig(tmp_path, idle=2) as r:
        await r.stop_provider()  # not ready until a reconcile succeeds
        shard = await r.start_shard(metrics_addr=f"127.0.0.1:{port}")
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            await eventually(lambda: shard.cycles >= 1, what="a cycle without the provider")
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
            await r.restart_provider()
            await eventually(lambda: shard.reconciler.ready, what="first reconcile")
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200
            # The inventory gauges are set after each cycle, and the first cycle after the
            # reconcile may not have ended yet: read until one has.
            idle = 'bigfleet_shard_inventory_machines{capacity_type="on_demand",state="Idle"} 2.0'
            deadline = time.monotonic() + 15
            while True:
                async with http.get(f"{base}/metrics") as response:
                    body = await response.text()
                if idle in body or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        assert idle in body
        assert "bigfleet_shard_cycle_duration_seconds_bucket" in body


async def test_oversized_frames_and_unknown_clusters_close_only_their_stream(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, idle=2) as r:
        shard = await r.start_shard(max_frame_bytes=4096, allowed_clusters=frozenset({"ok"}))
        stranger = r.operator("stranger")
        stranger.start()
        big = r.operator("ok")
        big.start()
        await eventually(lambda: big.frames("ack"), what="hello acknowledged")
        huge = need(8)
        huge.requirements[0].values.extend(f"type-{i:05d}" for i in range(1000))
        big.rollup(huge)
        await eventually(lambda: None not in (stranger.status, big.status), what="both closed")
        assert stranger.status == grpc.StatusCode.PERMISSION_DENIED
        assert big.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        again = r.operator("ok")
        again.start()
        again.rollup(need(8))
        await eventually(lambda: len(_configured_for(r.fleet, "ok")) == 1, what="served after")
        assert len(shard.state.inventory) == 2
        await again.close()


async def test_a_stopping_shard_ends_each_stream_with_unavailable_and_its_reason(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.start_shard()
        ops = [r.operator(c) for c in ("c1", "c2")]
        for op in ops:
            op.start()
        await eventually(lambda: all(op.frames("ack") for op in ops), what="both sessions")
        await r.stop_shard()
        await eventually(lambda: all(op.status is not None for op in ops), what="both closed")
        for op in ops:  # operators dial again on UNAVAILABLE; never an OK end
            assert op.status == grpc.StatusCode.UNAVAILABLE
            assert op.details == "the shard is stopping; dial again"
