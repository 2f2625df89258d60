"""A Node's readiness reaches its UpcomingNode with one read per Node, not one per
heartbeat: on the real API server, counting the operator's calls."""

from __future__ import annotations

import uuid
from typing import Any

import kr8s.asyncio
import pytest

from bigfleet.clock import SimulatedClock
from bigfleet.crd import UpcomingNode
from bigfleet.operators.operator.ready_nodes import ReadyNodes
from bigfleet.operators.operator.writers import write_upcoming
from bigfleet.wire import provider_pb2, shard_pb2

S = provider_pb2.MachineState


def _node(name: str, ready: bool) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }


async def _phase(api: kr8s.asyncio.Api, machine: str) -> str:
    node = await UpcomingNode.get(f"un-{machine}", api=api)
    return str(node.raw["status"]["phase"])


async def test_heartbeats_of_a_ready_node_cost_no_reads(
    api: kr8s.asyncio.Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined, late = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    launched = shard_pb2.NodeStateUpdate(
        machine_id=joined, cluster_id="c1", state=S.MACHINE_STATE_IDLE
    )
    assert await write_upcoming(api, launched) == "Launched"
    clock = SimulatedClock()
    nodes = ReadyNodes(api, retry_absent_s=5, clock=clock)
    reads: list[str] = []
    call_api = api.call_api

    def counting(method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        if method == "GET":
            reads.append(str(kwargs.get("url", "")))
        return call_api(method, *args, **kwargs)

    monkeypatch.setattr(api, "call_api", counting)

    await nodes.seen("ADDED", _node(joined, ready=False))
    assert reads == [] and len(nodes) == 0  # not Ready: nothing to pass on
    for _ in range(4):  # turned Ready, then three heartbeats
        await nodes.seen("MODIFIED", _node(joined, ready=True))
    assert len(reads) == 1
    monkeypatch.setattr(api, "call_api", call_api)
    assert await _phase(api, joined) == "Ready"
    monkeypatch.setattr(api, "call_api", counting)

    # A Ready Node whose UpcomingNode is not written yet is looked at again, now and then.
    reads.clear()
    for _ in range(3):
        await nodes.seen("MODIFIED", _node(late, ready=True))
    assert len(reads) == 1
    monkeypatch.setattr(api, "call_api", call_api)
    await write_upcoming(
        api, shard_pb2.NodeStateUpdate(machine_id=late, cluster_id="c1", state=S.MACHINE_STATE_IDLE)
    )
    monkeypatch.setattr(api, "call_api", counting)
    clock.advance(5)
    await nodes.seen("MODIFIED", _node(late, ready=True))
    assert len(reads) == 2
    monkeypatch.setattr(api, "call_api", call_api)
    assert await _phase(api, late) == "Ready"

    # Forgotten when not Ready or deleted: memory follows the Nodes there are.
    assert len(nodes) == 2
    await nodes.seen("MODIFIED", _node(joined, ready=False))
    await nodes.seen("DELETED", _node(late, ready=True))
    assert len(nodes) == 0
