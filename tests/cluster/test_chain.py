"""The operator, a real shard and the fake provider together against the real API server:
CapacityRequests become bound machines and Ready UpcomingNodes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import kr8s
import kr8s.asyncio
import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, CapacityRequest, UpcomingNode
from bigfleet.operators.operator.app import OperatorSettings, run
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.server import start as start_provider
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.service import ShardService, ShardSettings
from tests.support.waiting import until


class LoopThread:
    """An event loop of its own in a thread: kopf cancels what else runs in its loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Awaitable[Any], timeout_s: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Chain:
    def __init__(self, control_plane: LocalControlPlane, data_dir: Path) -> None:
        self.cp, self.data_dir = control_plane, data_dir
        self.backend, self.front = LoopThread(), LoopThread()
        self.fleet: FakeFleet | None = None
        self.shard: ShardService | None = None

    async def _start_backend(self) -> int:
        self.fleet = FleetConfig().with_quick_seeds(idle=3, speculative=2).build(time.monotonic)
        self.provider, port = await start_provider(self.fleet, "127.0.0.1:0")
        self.shard = ShardService(
            ShardSettings(
                shard_id="shard-chain",
                listen="127.0.0.1:0",
                providers=(("fake", f"127.0.0.1:{port}"),),
                data_dir=self.data_dir,
                metrics_addr="0",
                cycle_interval_s=0.3,
                min_cycle_gap_s=0.05,
                bootstrap_timeout_s=10,
                engine=EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)),
            )
        )
        started = asyncio.Event()
        self.shard_task = asyncio.create_task(self.shard.run(started))
        await started.wait()
        return self.shard.port

    async def _stop_backend(self) -> None:
        self.shard_task.cancel()
        await asyncio.gather(self.shard_task, return_exceptions=True)
        await self.provider.stop(grace=None)

    def start(self) -> None:
        shard_port = self.backend.run(self._start_backend())
        self.stop_operator = asyncio.Event()
        settings = OperatorSettings(
            cluster_id="chain",
            shard_address=f"127.0.0.1:{shard_port}",
            kubeconfig=self.cp.kubeconfig_path,
            rollup_interval_s=0.5,
            metrics_addr="0",
        )

        async def operator() -> None:
            self.stop_operator = asyncio.Event()
            await run(settings, self.stop_operator)

        self.operator = asyncio.run_coroutine_threadsafe(operator(), self.front.loop)

    def stop(self) -> None:
        self.front.loop.call_soon_threadsafe(self.stop_operator.set)
        self.operator.result(30)
        self.backend.run(self._stop_backend())
        self.front.close()
        self.backend.close()


@pytest.fixture
def chain(control_plane: LocalControlPlane, tmp_path: Path) -> Iterator[Chain]:
    # UpcomingNodes are cluster-scoped: an earlier test's, still Ready under the same
    # machine names, would pass for this chain's.
    control_plane.kubectl("delete", "upcomingnodes", "--all")
    the_chain = Chain(control_plane, tmp_path / "data")
    the_chain.start()
    yield the_chain
    the_chain.stop()


def request(name: str, namespace: str, resources: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CapacityRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "resources": resources,
            "priority": 1000,
            "requirements": [
                {
                    "key": "node.kubernetes.io/instance-type",
                    "operator": "In",
                    "values": ["m6i.2xlarge"],
                }
            ],
        },
    }


async def test_capacity_requests_become_ready_upcoming_nodes_through_a_real_shard(
    api: kr8s.asyncio.Api, namespace: str, chain: Chain
) -> None:
    for i in range(4):  # 4 pods of 4 CPU: two 8-CPU machines
        await CapacityRequest(request(f"job-{i}", namespace, {"cpu": "4"}), api=api).create()
    # A resource name the engine cannot use never gets past the API server now; the
    # operator's own refusal path is covered in test_operator_bad_request.py.
    with pytest.raises(kr8s.ServerError, match=r"spec\.resources"):
        await CapacityRequest(request("odd", namespace, {"CPU cores": "1"}), api=api).create()
    missing = request("metal", namespace, {"cpu": "64"})
    missing["spec"]["requirements"][0]["values"] = ["m6i.metal"]  # no such machines
    await CapacityRequest(missing, api=api).create()

    async def ready_nodes() -> list[str]:
        nodes = [n async for n in api.async_get(UpcomingNode)]
        return sorted(n.name for n in nodes if (n.raw.get("status") or {}).get("phase") == "Ready")

    ready = await until(lambda: _at_least(ready_nodes(), 2), "two Ready UpcomingNodes")
    assert all(name.startswith("un-idle-") for name in ready)  # Idle beats Speculative
    assert chain.fleet is not None
    bound = [m for m in chain.fleet.list().machines if m.cluster == "chain"]
    assert len(bound) == 2

    async def acknowledged() -> bool:
        crs = [c async for c in api.async_get("capacityrequests", namespace=namespace)]
        return all(
            (c.raw.get("status") or {}).get("phase") == "Acknowledged"
            for c in crs
            if c.name.startswith("job-")
        )

    await until(acknowledged, "every translatable request Acknowledged")

    async def explained() -> set[tuple[str, str]]:
        found = [e async for e in api.async_get("events", namespace=namespace)]
        return {(e.raw["involvedObject"]["name"], e.raw.get("reason")) for e in found}

    wanted = {("job-0", "Acknowledged"), ("job-0", "NodeComing"), ("metal", "WaitingForCapacity")}
    await until(lambda: _superset(explained(), wanted), "Events explaining the requests")


async def _at_least(values: Awaitable[list[str]], n: int) -> list[str] | None:
    found = await values
    return found if len(found) >= n else None


async def _superset(found: Awaitable[set[tuple[str, str]]], wanted: set[tuple[str, str]]) -> bool:
    return wanted <= await found
