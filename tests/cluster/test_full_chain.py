"""Unschedulable Pods to bound Pods and back, every component a real process.

Control plane with controller-manager, scheduler and kwok; fake provider
booting machines into Nodes with the operator's join blob (TLS bootstrap);
shard, operator, pod controller. See bigfleet/controlplane/chain.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Node, Pod

from bigfleet.controlplane.chain import Chain, pod_manifest
from bigfleet.crd import UpcomingNode
from tests.support.waiting import until

FLEET = {
    "latency": {"creating": 0.5, "configuring": 0.5, "draining": 0.2},
    "pools": [
        {"prefix": "idle", "count": 2, "state": "idle"},
        {"prefix": "spec", "count": 2, "state": "speculative"},
    ],
}


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    the_chain = Chain(tmp_path / "chain", FLEET, shard_args=("--cycle-interval", "0.5"))
    the_chain.start()
    yield the_chain
    the_chain.stop()


async def test_unschedulable_pods_get_nodes_and_leave_them_when_deleted(chain: Chain) -> None:
    api = await kr8s.asyncio.api(kubeconfig=str(chain.control_plane.kubeconfig_path))
    for i in range(6):  # 6 x 3 CPU on 8-CPU machines: three machines
        await Pod(pod_manifest(f"job-{i}", "3"), api=api).create()

    async def bound() -> list[str]:
        pods = [p async for p in api.async_get("pods", namespace="default")]
        return [p.name for p in pods if p.raw["spec"].get("nodeName")]

    await until(lambda: _count(bound(), 6), "every pod bound to a node", 120)
    nodes = {n.name: n async for n in api.async_get(Node)}
    assert len(nodes) == 3
    for node in nodes.values():
        labels = node.raw["metadata"]["labels"]
        assert labels["node.kubernetes.io/instance-type"] == "m6i.2xlarge"
        assert node.raw["status"]["allocatable"]["cpu"] == "8"

    async def ready_upcoming() -> list[str]:
        found = [u async for u in api.async_get(UpcomingNode)]
        return [u.name for u in found if (u.raw.get("status") or {}).get("phase") == "Ready"]

    await until(lambda: _count(ready_upcoming(), 3), "three UpcomingNodes Ready", 60)

    # Scale down: the pods go, their CapacityRequests are collected, the machines drain.
    for i in range(6):
        await (await Pod.get(f"job-{i}", namespace="default", api=api)).delete(grace_period=0)

    async def nodes_left() -> int | None:
        remaining = [n async for n in api.async_get(Node)]
        return len(remaining) == 0 or None

    await until(nodes_left, "every node drained and gone", 120)
    crs = [c async for c in api.async_get("capacityrequests", namespace="default")]
    assert not crs


async def _count(values: Any, n: int) -> bool:
    return len(await values) >= n
