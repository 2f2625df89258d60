"""The shard publishes its Shard resource and obeys its spec, against the real API server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kr8s.asyncio
import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import Shard
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.server import start as start_provider
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.resource import ShardResource, run_controls
from bigfleet.shard.runtime.service import ShardService, ShardSettings
from tests.component.harness import eventually, need


class ShardThread:
    """A fake provider and a shard with its resource publisher and kopf controls, in a
    thread of their own (kopf cancels what runs in its loop when it stops)."""

    def __init__(self, kubeconfig: Path, data_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.data_dir = data_dir
        self.service: ShardService | None = None
        self.ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        fleet = FleetConfig().with_quick_seeds(idle=2, speculative=0).build(time.monotonic)
        provider, port = await start_provider(fleet, "127.0.0.1:0")
        self.service = ShardService(
            ShardSettings(
                shard_id="shard-it",
                listen="127.0.0.1:0",
                providers=(("fake", f"127.0.0.1:{port}"),),
                data_dir=self.data_dir,
                metrics_addr="0",
                cycle_interval_s=0.3,
                min_cycle_gap_s=0.05,
                engine=EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)),
            )
        )
        api = await kr8s.asyncio.api(kubeconfig=str(self.kubeconfig))
        resource = ShardResource(self.service, api, publish_every_s=0.3)
        kopf_stop = asyncio.Event()
        controls = asyncio.create_task(run_controls(self.service, str(self.kubeconfig), kopf_stop))
        tasks = [asyncio.create_task(self.service.run()), asyncio.create_task(resource.run())]
        self.ready.set()
        await self._stop.wait()
        # Everything else first: kopf cancels whatever still runs in its loop when it stops.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await provider.stop(grace=None)
        kopf_stop.set()
        await asyncio.gather(controls, return_exceptions=True)

    def start(self) -> None:
        self._thread.start()
        assert self.ready.wait(30)

    def call(self, fn) -> None:  # type: ignore[no-untyped-def]
        self._loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def running_shard(control_plane: LocalControlPlane, tmp_path: Path) -> Iterator[ShardThread]:
    shard = ShardThread(control_plane.kubeconfig_path, tmp_path / "data")
    shard.start()
    yield shard
    shard.stop()


async def test_shard_status_appears_and_pausing_acquisitions_takes_effect(
    api: kr8s.asyncio.Api, running_shard: ShardThread
) -> None:
    async def published() -> dict:  # type: ignore[type-arg]
        try:
            obj = await Shard.read("shard-it", api)
        except kr8s.ServerError:  # e.g. 429 while a CRD another test made settles in
            return {}
        return dict(obj.raw.get("status") or {}) if obj is not None else {}

    async def wait_status(predicate, what: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = await published()
            if status and predicate(status):
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: last status {await published()}")

    def conditions(status: dict) -> dict[str, str]:  # type: ignore[type-arg]
        return {c["type"]: c["status"] for c in status.get("conditions", [])}

    # The listing can be published a moment before the first cycle completes, Ready
    # still False ("waiting for the first cycle"); both must come, in either order.
    status = await wait_status(
        lambda s: s.get("inventory", {}).get("idle") == 2 and conditions(s).get("Ready") == "True",
        "inventory listed and Ready",
    )
    assert status["epoch"] == 1
    assert conditions(status)["Degraded"] == "False"

    shard_obj = await Shard.get("shard-it", api=api)
    await shard_obj.patch({"spec": {"pauseAcquisitions": True}})
    service = running_shard.service
    assert service is not None
    await eventually(
        lambda: service.engine.settings.rails.pause_acquisitions,
        timeout_s=30,
        what="the spec reached the shard",
    )
    # Demand arrives while paused: the next cycle decides the Bootstrap but holds it back.
    running_shard.call(lambda: service.state.apply_rollup(_rollup()))
    await eventually(
        lambda: service.last is not None and service.last.rails.suppressed,
        timeout_s=10,
        what="a suppressed acquisition",
    )
    assert service.last is not None and service.last.rails.suppressed == {"Bootstrap": 1}
    assert service.metrics.actuation_paused._value.get() == 1


def _rollup():  # type: ignore[no-untyped-def]
    from bigfleet.wire import capacity_pb2

    return capacity_pb2.ClusterCapacityNeeds(cluster_id="c1", needs=[need(8)])
