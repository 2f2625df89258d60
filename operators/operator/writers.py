"""What the operator writes into its cluster from the shard's frames.

UpcomingNode (`un-<machine id>`) follows NodeStateUpdate frames through the
phases Provisioning, Launched, Registered, Ready, Draining, Drained, Failed;
AvailableCapacity (`ac-<hash of the profile key>`) mirrors the shard's hints.
Each object has this one writer.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from typing import Any, cast

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Node

from bigfleet.crd import AvailableCapacity, UpcomingNode
from bigfleet.wire import provider_pb2, shard_pb2

log = logging.getLogger(__name__)

S = provider_pb2.MachineState
PHASES = {
    S.MACHINE_STATE_SPECULATIVE: "Provisioning",
    S.MACHINE_STATE_CREATING: "Provisioning",
    S.MACHINE_STATE_IDLE: "Launched",
    S.MACHINE_STATE_CONFIGURING: "Registered",
    S.MACHINE_STATE_CONFIGURED: "Ready",
    S.MACHINE_STATE_DRAINING: "Draining",
    S.MACHINE_STATE_DELETING: "Provisioning",
    S.MACHINE_STATE_FAILED: "Failed",
}
AVAILABILITY = {4: "High", 3: "Medium", 2: "Low"}
# When an UpcomingNode reached Drained or Failed; garbage collection counts from here.
FINISHED_AT = "bigfleet.lucy.sh/finished-at"
_OPERATOR_NAMES = {1: "In", 2: "NotIn", 3: "Exists", 4: "DoesNotExist", 5: "Same"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def upcoming_name(machine_id: str) -> str:
    return f"un-{machine_id}".lower()


def available_name(key: str) -> str:
    """`ac-` + a hash: supersedes keys hold characters object names cannot."""
    return "ac-" + hashlib.sha256(key.encode()).hexdigest()[:16]


async def write_upcoming(api: kr8s.asyncio.Api, update: shard_pb2.NodeStateUpdate) -> str:
    """Create or update the machine's UpcomingNode; returns the phase written."""
    name = upcoming_name(update.machine_id)
    spec: dict[str, Any] = {
        "labels": dict(update.labels),
        "resources": dict(update.resources.resources),
        "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in update.taints],
    }
    try:
        node = await UpcomingNode.get(name, api=api)
        status_now = cast(dict[str, Any], node.raw).get("status") or {}
        previous = status_now.get("phase")
        await node.patch({"spec": spec})
    except kr8s.NotFoundError:
        node = UpcomingNode(
            {
                "apiVersion": UpcomingNode.version,
                "kind": "UpcomingNode",
                "metadata": {"name": name},
                "spec": spec,
            },
            api=api,
        )
        await node.create()
        previous = None
    phase = PHASES.get(update.state, "Provisioning")
    if update.state == S.MACHINE_STATE_IDLE and previous in ("Draining", "Drained"):
        phase = "Drained"  # back to Idle after a drain: it left this cluster
        await _delete_node(api, update.node_name or update.machine_id)
    status: dict[str, Any] = {
        "phase": phase,
        "providerID": update.provider_id,
        "lastError": update.last_error or None,
    }
    if update.node_name and phase in ("Registered", "Ready", "Draining"):
        status["nodeRef"] = {"kind": "Node", "name": update.node_name}
    if previous is None:
        status["provisioningStartTime"] = _now()
    if phase in ("Drained", "Failed") and phase != previous:
        await node.patch({"metadata": {"annotations": {FINISHED_AT: _now()}}})
    await node.patch(
        {"status": {k: v for k, v in status.items() if v is not None}}, subresource="status"
    )
    return phase


async def _delete_node(api: kr8s.asyncio.Api, name: str) -> None:
    """The machine left the cluster, wiped: its Node will never come back Ready, so it
    goes, as a cloud's node lifecycle would remove it (its name may join again later)."""
    try:
        node = await Node.get(name, api=api)
        await node.delete()
        log.info("node of a drained machine deleted", extra={"node": name})
    except kr8s.NotFoundError:
        pass


async def write_available(api: kr8s.asyncio.Api, update: shard_pb2.AvailableCapacityUpdate) -> str:
    name = available_name(update.supersedes_key)
    spec = {
        "requirements": [
            {
                "key": r.key,
                "operator": _OPERATOR_NAMES.get(r.operator, "In"),
                **({"values": list(r.values)} if r.values else {}),
            }
            for r in update.requirements
        ],
        "resources": dict(update.resources.resources),
        "availableCount": update.available_count,
        "availability": AVAILABILITY.get(update.confidence, "None"),
        "cost": f"{update.cost_per_hour:.6f}".rstrip("0").rstrip(".") or "0",
    }
    try:
        obj = await AvailableCapacity.get(name, api=api)
        await obj.patch({"spec": spec})
    except kr8s.NotFoundError:
        await AvailableCapacity(
            {
                "apiVersion": AvailableCapacity.version,
                "kind": "AvailableCapacity",
                "metadata": {"name": name},
                "spec": spec,
            },
            api=api,
        ).create()
    return name


async def set_upcoming_phase(
    api: kr8s.asyncio.Api, machine_id: str, phase: str, error: str | None = None
) -> None:
    """Move an existing UpcomingNode's phase (reclaim path); absent ones are left absent."""
    try:
        node = await UpcomingNode.get(upcoming_name(machine_id), api=api)
    except kr8s.NotFoundError:
        return
    status: dict[str, Any] = {"phase": phase}
    if error is not None:
        status["lastError"] = error
    await node.patch({"status": status}, subresource="status")


async def mark_node_ready(api: kr8s.asyncio.Api, node_name: str) -> bool:
    """The real Node turned Ready: so is its UpcomingNode, if it was still on its way."""
    try:
        node = await UpcomingNode.get(upcoming_name(node_name), api=api)
    except kr8s.NotFoundError:
        return False
    phase = (cast(dict[str, Any], node.raw).get("status") or {}).get("phase")
    if phase not in ("Provisioning", "Launched", "Registered"):
        return False
    await node.patch(
        {"status": {"phase": "Ready", "nodeRef": {"kind": "Node", "name": node_name}}},
        subresource="status",
    )
    return True


async def collect_finished(api: kr8s.asyncio.Api, retention_s: float) -> list[str]:
    """Delete UpcomingNodes Drained or Failed longer than `retention_s` ago."""
    now = datetime.datetime.now(datetime.UTC)
    removed = []
    async for node in api.async_get(UpcomingNode):
        if not isinstance(node, UpcomingNode):
            continue
        raw = cast(dict[str, Any], node.raw)
        finished = (raw["metadata"].get("annotations") or {}).get(FINISHED_AT)
        phase = (raw.get("status") or {}).get("phase")
        if phase not in ("Drained", "Failed") or not finished:
            continue
        since = datetime.datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
        if (now - since).total_seconds() >= retention_s:
            await node.delete()
            removed.append(node.name)
    return removed
