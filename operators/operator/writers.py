"""What the operator writes into its cluster from the shard's frames.

UpcomingNode (`un-<machine id>`) follows NodeStateUpdate frames through the
phases Provisioning, Launched, Registered, Ready, Draining, Drained, Failed;
AvailableCapacity (`ac-<hash of the profile key>`) mirrors the shard's hints.
Each object has this one writer.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Node

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.crd import AvailableCapacity, UpcomingNode
from bigfleet.crd.models import (
    AvailableCapacityRequirement,
    AvailableCapacitySpec,
    ObjectReference,
    Taint,
    UpcomingNodePhase,
    UpcomingNodeSpec,
    UpcomingNodeStatus,
)
from bigfleet.lifecycle import MachineState as S
from bigfleet.operators.operator.wire_requirements import operator_of
from bigfleet.timestamps import rfc3339
from bigfleet.wire import shard_pb2

log = logging.getLogger(__name__)

PHASES: dict[int, UpcomingNodePhase] = {
    S.SPECULATIVE: "Provisioning",
    S.CREATING: "Provisioning",
    S.IDLE: "Launched",
    S.CONFIGURING: "Registered",
    S.CONFIGURED: "Ready",
    S.DRAINING: "Draining",
    S.DELETING: "Provisioning",
    S.FAILED: "Failed",
}
C = shard_pb2.AvailableCapacityUpdate.Confidence
AVAILABILITY = {C.CONFIDENCE_HIGH: "High", C.CONFIDENCE_MEDIUM: "Medium", C.CONFIDENCE_LOW: "Low"}
# When an UpcomingNode reached Drained or Failed; garbage collection counts from here.
FINISHED_AT = "bigfleet.lucy.sh/finished-at"


def upcoming_name(machine_id: str) -> str:
    return f"un-{machine_id}".lower()


def available_name(key: str) -> str:
    """`ac-` + a hash: supersedes keys hold characters object names cannot."""
    return "ac-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _phase(node: UpcomingNode) -> UpcomingNodePhase | None:
    """The phase the object's status holds; None before its first status write."""
    status = node.status_model()
    return status.phase if isinstance(status, UpcomingNodeStatus) else None


async def _patch_status(node: UpcomingNode, status: UpcomingNodeStatus) -> None:
    await node.patch({"status": status.to_object()}, subresource="status")


async def write_upcoming(api: kr8s.asyncio.Api, update: shard_pb2.NodeStateUpdate) -> str:
    """Create or update the machine's UpcomingNode; returns the phase written."""
    name = upcoming_name(update.machine_id)
    spec = UpcomingNodeSpec(
        labels=dict(update.labels),
        resources=dict(update.resources.resources),
        taints=tuple(Taint(key=t.key, value=t.value, effect=t.effect) for t in update.taints),
    )
    previous: UpcomingNodePhase | None
    try:
        node = await UpcomingNode.get(name, api=api)
        previous = _phase(node)
        await node.patch({"spec": spec.to_object()})
    except kr8s.NotFoundError:
        node = UpcomingNode(UpcomingNode.manifest(name, spec), api=api)
        await node.create()
        previous = None
    phase = PHASES.get(update.state, "Provisioning")
    if int(update.state) == S.IDLE and previous in ("Draining", "Drained"):
        phase = "Drained"  # back to Idle after a drain: it left this cluster
        await _delete_node(api, update.node_name or update.machine_id)
    if phase in ("Drained", "Failed") and phase != previous:
        await node.patch({"metadata": {"annotations": {FINISHED_AT: rfc3339()}}})
    joined = update.node_name and phase in ("Registered", "Ready", "Draining")
    status = UpcomingNodeStatus(
        phase=phase,
        provider_id=update.provider_id,
        last_error=update.last_error or None,
        node_ref=ObjectReference(kind="Node", name=update.node_name) if joined else None,
        provisioning_start_time=rfc3339() if previous is None else None,
    )
    await _patch_status(node, status)
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
    spec = AvailableCapacitySpec(
        requirements=tuple(
            AvailableCapacityRequirement(
                key=r.key, operator=operator_of(r), values=tuple(r.values) or None
            )
            for r in update.requirements
        ),
        resources=dict(update.resources.resources),
        available_count=update.available_count,
        availability=AVAILABILITY.get(update.confidence, "None"),
        cost=f"{update.cost_per_hour:.6f}".rstrip("0").rstrip(".") or "0",
    )
    try:
        obj = await AvailableCapacity.get(name, api=api)
        await obj.patch({"spec": spec.to_object()})
    except kr8s.NotFoundError:
        await AvailableCapacity(AvailableCapacity.manifest(name, spec), api=api).create()
    return name


async def set_upcoming_phase(
    api: kr8s.asyncio.Api, machine_id: str, phase: UpcomingNodePhase, error: str | None = None
) -> None:
    """Move an existing UpcomingNode's phase (reclaim path); absent ones are left absent."""
    try:
        node = await UpcomingNode.get(upcoming_name(machine_id), api=api)
    except kr8s.NotFoundError:
        return
    await _patch_status(node, UpcomingNodeStatus(phase=phase, last_error=error))


async def mark_node_ready(api: kr8s.asyncio.Api, node_name: str) -> bool:
    """The real Node turned Ready: so is its UpcomingNode, if it was still on its way."""
    try:
        node = await UpcomingNode.get(upcoming_name(node_name), api=api)
    except kr8s.NotFoundError:
        return False
    if _phase(node) not in ("Provisioning", "Launched", "Registered"):
        return False
    node_ref = ObjectReference(kind="Node", name=node_name)
    await _patch_status(node, UpcomingNodeStatus(phase="Ready", node_ref=node_ref))
    return True


async def collect_finished(
    api: kr8s.asyncio.Api, retention_s: float, clock: Clock = REAL_CLOCK
) -> list[str]:
    """Delete UpcomingNodes Drained or Failed longer than `retention_s` ago."""
    now = clock.time()
    removed = []
    async for node in api.async_get(UpcomingNode):
        if not isinstance(node, UpcomingNode):
            continue
        finished = (node.raw["metadata"].get("annotations") or {}).get(FINISHED_AT)
        try:
            phase = _phase(node)
            finished_at = datetime.fromisoformat(finished).timestamp() if finished else None
        except ValueError as err:  # a model refusal too; one odd object must not stop the sweep
            log.warning(
                "UpcomingNode not collectable", extra={"node": node.name, "error": str(err)}
            )
            continue
        if phase not in ("Drained", "Failed") or finished_at is None:
            continue
        if now - finished_at >= retention_s:
            await node.delete()
            removed.append(node.name)
    return removed
