"""Static stability: with parts of BigFleet (or all of it) down, clusters keep running.

Every component is a real process (bigfleet/controlplane/chain.py) with a
coordinator on the embedded store; they are SIGKILLed the way nodes die.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Node, Pod

from bigfleet.controlplane.chain import Chain, pod_manifest
from tests.support.waiting import until

FLEET = {
    "latency": {"creating": 0.3, "configuring": 0.3, "draining": 0.2},
    "pools": [{"prefix": "m", "count": 6, "state": "idle"}],
}
BOUND_TIMEOUT_S = 90


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    the_chain = Chain(
        tmp_path / "chain", FLEET, shard_args=("--cycle-interval", "0.5"), coordinator=True
    )
    the_chain.start()
    yield the_chain
    the_chain.stop()


class Cluster:
    def __init__(self, api: kr8s.asyncio.Api) -> None:
        self.api = api

    async def add(self, *names: str) -> None:
        for name in names:
            # Whole machines (8 CPU on 8): demand is summed per need, so pods leaving a
            # remainder on every node would be counted as fitting where they cannot.
            await Pod(pod_manifest(name, "8"), api=self.api).create()

    async def pods(self) -> dict[str, dict[str, Any]]:
        found = [p async for p in self.api.async_get("pods", namespace="default")]
        return {p.name: p.raw for p in found}

    async def bound(self, *names: str) -> bool:
        pods = await self.pods()
        return all(pods.get(n, {}).get("spec", {}).get("nodeName") for n in names)

    async def running(self) -> dict[str, str]:
        """Pod -> the node it runs on, for every Running pod."""
        return {
            name: raw["spec"]["nodeName"]
            for name, raw in (await self.pods()).items()
            if (raw.get("status") or {}).get("phase") == "Running"
        }

    async def nodes(self) -> set[str]:
        return {n.name async for n in self.api.async_get(Node)}


async def test_each_part_of_bigfleet_can_die_without_hurting_the_cluster(chain: Chain) -> None:
    cluster = Cluster(await kr8s.asyncio.api(kubeconfig=str(chain.control_plane.kubeconfig_path)))
    await cluster.add("a", "b")
    await until(lambda: cluster.bound("a", "b"), "first pods bound", BOUND_TIMEOUT_S)

    # The coordinator dies: the shard keeps provisioning from what it owns.
    chain.kill("coordinator")
    await cluster.add("c")
    await until(lambda: cluster.bound("c"), "a pod bound with the coordinator down", 60)

    # The shard dies: running pods are untouched, new demand waits.
    await until(lambda: _count(cluster.running(), 3), "three pods Running", 60)
    before = await cluster.running()
    nodes_before = await cluster.nodes()
    chain.kill("shard")
    await cluster.add("d")
    await asyncio.sleep(5)  # several roll-ups and shard cycles' worth of time
    assert await cluster.running() == before
    assert await cluster.nodes() == nodes_before
    assert not await cluster.bound("d")

    # The shard comes back: inventory rebuilt from the provider, the waiting pod
    # served, no machine lost or counted twice.
    chain.start_component("shard")
    await until(lambda: cluster.bound("d"), "the waiting pod bound after the restart", 60)
    running = await until(lambda: _count(cluster.running(), 4), "four pods Running", 60)
    assert {k: v for k, v in running.items() if k in before} == before
    nodes = await cluster.nodes()
    assert len(nodes) == 4 and nodes_before < nodes  # one new node, the old ones kept

    # Everything BigFleet runs dies: the cluster keeps running its pods.
    for name in ("pod-controller-chain", "operator-chain", "shard", "provider"):
        chain.kill(name)
    await asyncio.sleep(5)
    assert await cluster.running() == running
    assert await cluster.nodes() == nodes


async def _count(values: Any, n: int) -> Any:
    found = await values
    return found if len(found) >= n else None
