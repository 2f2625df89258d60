"""What the operator writes into its cluster from the shard's frames.

UpcomingNode (`un-<machine id>`) follows NodeStateUpdate frames through the
phases Provisioning, Launched, Registered, Ready, Draining, Drained, Failed;
AvailableCapacity (`ac-<hash of the profile key>`) mirrors the shard's hints.
Each object has this one writer.

No write reads its object first. `APIObject.get` lists by name and, when nothing
matches, lists again with backoff until its 2 s timeout (five lists, ~2.5 s) before
it raises NotFoundError: every first write of an object stalled that long, and the
lists loaded the API server the other writes were waiting on. The spec is written by
server-side apply (`apply_spec`), one call that creates the object or updates it and
answers with the object as it now stands, status included; an UpcomingNode write is
that call and a status patch. Where the object must be seen before it is written,
`read` GETs it by name, once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from datetime import datetime
from typing import Literal, TypeVar

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Node

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.crd import API_VERSION, AvailableCapacity, UpcomingNode
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
MANAGER = "bigfleet-operator"  # the field manager owning the spec of what it writes


def upcoming_name(machine_id: str) -> str:
    return f"un-{machine_id}".lower()


def available_name(key: str) -> str:
    """`ac-` + a hash: supersedes keys hold characters object names cannot."""
    return "ac-" + hashlib.sha256(key.encode()).hexdigest()[:16]


K = TypeVar("K", UpcomingNode, AvailableCapacity)


async def apply_spec(
    kind: type[K], name: str, spec: UpcomingNodeSpec | AvailableCapacitySpec, api: kr8s.asyncio.Api
) -> K:
    """Create the object with `spec`, or make its spec `spec`: one server-side apply, as
    `MANAGER`, forced (this operator is the object's one writer). The answer is the whole
    object, status as it was. Keys the previous apply set and this one leaves out go:
    the spec mirrors the newest frame."""
    body = kind.manifest(name, spec)
    async with api.call_api(
        "PATCH",
        version=API_VERSION,
        url=f"{kind.endpoint}/{name}",
        content=json.dumps(body),
        headers={"Content-Type": "application/apply-patch+yaml"},  # JSON is YAML
        params={"fieldManager": MANAGER, "force": "true"},
    ) as response:
        return kind(response.json(), api=api)


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
    node = await apply_spec(UpcomingNode, name, spec, api)
    previous = _phase(node)  # None for an object just created
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
        await Node(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}, api=api
        ).delete()
    except kr8s.NotFoundError:
        return
    log.info("node of a drained machine deleted", extra={"node": name})


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
    await apply_spec(AvailableCapacity, name, spec, api)
    return name


async def set_upcoming_phase(
    api: kr8s.asyncio.Api, machine_id: str, phase: UpcomingNodePhase, error: str | None = None
) -> None:
    """Move an existing UpcomingNode's phase (reclaim path); absent ones are left absent
    (a status patch does not create)."""
    node = UpcomingNode.named(upcoming_name(machine_id), api)
    with contextlib.suppress(kr8s.NotFoundError):
        await _patch_status(node, UpcomingNodeStatus(phase=phase, last_error=error))


ReadyOutcome = Literal["marked", "settled", "absent"]


async def mark_node_ready(api: kr8s.asyncio.Api, node_name: str) -> ReadyOutcome:
    """The real Node turned Ready: so is its UpcomingNode, if it was still on its way.

    "marked": it was, and is Ready now; "settled": it is past that (Ready, Drained, ...)
    and stays as it is; "absent": no UpcomingNode yet, or one whose status is not yet
    written (its writer may be behind the Node), or a Node BigFleet did not bring.
    """
    node = await UpcomingNode.read(upcoming_name(node_name), api)
    phase = _phase(node) if node is not None else None
    if node is None or phase is None:
        return "absent"
    if phase not in ("Provisioning", "Launched", "Registered"):
        return "settled"
    node_ref = ObjectReference(kind="Node", name=node_name)
    await _patch_status(node, UpcomingNodeStatus(phase="Ready", node_ref=node_ref))
    return "marked"


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
