"""Two clusters, one shard (reporting to a coordinator): high-priority demand in B
takes a machine from A's low-priority work through a real ReclaimInstruction, and
the machine joins B."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
import yaml
from kr8s.asyncio.objects import Node, Pod

from bigfleet.controlplane.chain import Chain, pod_manifest
from bigfleet.crd import UpcomingNode
from tests.support.waiting import until

FLEET = {
    "latency": {"configuring": 0.3, "draining": 0.3},
    "pools": [{"prefix": "m", "count": 2, "state": "idle"}],
}


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    the_chain = Chain(
        tmp_path / "chain",
        FLEET,
        clusters=("a", "b"),
        shard_args=("--cycle-interval", "0.5"),
        coordinator=True,
    )
    the_chain.start()
    yield the_chain
    the_chain.stop()


def priority_class(name: str, value: int) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
    }


async def node_of(api: kr8s.asyncio.Api, name: str) -> str | None:
    try:
        found = await Pod.get(name, namespace="default", api=api)
    except kr8s.NotFoundError:
        return None
    node: str | None = found.raw["spec"].get("nodeName")
    return node


async def test_high_priority_demand_in_b_reclaims_a_machine_of_a(chain: Chain) -> None:
    a, b = [
        await kr8s.asyncio.api(kubeconfig=str(chain.control_planes[c].kubeconfig_path))
        for c in ("a", "b")
    ]
    for c in ("a", "b"):
        classes = [priority_class("low", 10), priority_class("high", 1_000_000)]
        chain.control_planes[c].kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(classes))

    # Cluster A takes both machines for low-priority work; pods of whole machines
    # (8 CPU on 8), since demand is summed per need.
    for name in ("batch-0", "batch-1"):
        await Pod(pod_manifest(name, "8", "low"), api=a).create()
    for name in ("batch-0", "batch-1"):
        await until(lambda n=name: node_of(a, n), f"{name} bound in cluster a", 90)
    a_nodes = {n.name async for n in a.async_get(Node)}
    assert len(a_nodes) == 2

    # Cluster B needs one machine at high priority; none is free.
    await Pod(pod_manifest("serving", "8", "high"), api=b).create()
    machine = await until(lambda: node_of(b, "serving"), "serving bound in cluster b", 120)
    assert machine in a_nodes  # one of A's machines, drained and rejoined to B

    # In A: its Node is gone, its UpcomingNode says Drained, one batch pod was evicted.
    # A's operator deletes the Node when the shard reports the machine Idle; under load
    # that report can reach A after the machine is already serving B.
    async def a_nodes_left() -> set[str] | None:
        names = {n.name async for n in a.async_get(Node)}
        return names if machine not in names else None

    remaining = await until(a_nodes_left, f"{machine}'s Node gone from cluster a", 60)
    assert len(remaining) == 1
    upcoming = await UpcomingNode.get(f"un-{machine}", api=a)
    assert upcoming.raw["status"]["phase"] == "Drained"
    survivors = [await node_of(a, n) for n in ("batch-0", "batch-1")]
    assert survivors.count(machine) == 0
