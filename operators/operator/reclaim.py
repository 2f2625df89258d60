"""The reclaim handler: cordon, acknowledge, then evict within the grace period.

Each node of a ReclaimInstruction is cordoned and its UpcomingNode set
Draining; the ack (`nodes_started`) goes back at once: it means the drain
started, not finished. Pods are then evicted through the policy/v1 Eviction
API, so PodDisruptionBudgets hold: a refused eviction (429) is retried with
backoff until the grace period runs out. A node emptied in time becomes
Drained; one that is not keeps Draining with `lastError` saying what is left.
DaemonSet pods and mirror pods are left alone, as kubectl drain leaves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Node, Pod

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.operators.operator import events
from bigfleet.operators.operator.writers import set_upcoming_phase
from bigfleet.recorder import Recorder
from bigfleet.wire import shard_pb2

log = logging.getLogger(__name__)
DEFAULT_GRACE_S = 30
RETRY_S = 1.0


def _evictable(pod: Pod) -> bool:
    meta = pod.raw["metadata"]
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    owners = meta.get("ownerReferences") or []
    return not any(o.get("kind") == "DaemonSet" for o in owners) and not meta.get(
        "deletionTimestamp"
    )


async def _evict(api: kr8s.asyncio.Api, pod: Pod) -> bool:
    """True when the pod is on its way out; False while a disruption budget refuses."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
    }
    try:
        async with api.call_api(
            "POST",
            version="v1",
            namespace=pod.namespace,
            url=f"pods/{pod.name}/eviction",
            json=body,
        ):
            return True
    except kr8s.ServerError as err:
        status = err.response.status_code if err.response is not None else 0
        if status == 404:
            return True  # already gone
        if status == 429:
            return False  # a PodDisruptionBudget says not now
        raise


async def _pods_on(api: kr8s.asyncio.Api, node: str) -> list[Pod]:
    found = [
        p
        async for p in api.async_get(
            "pods", namespace=kr8s.ALL, field_selector=f"spec.nodeName={node}"
        )
    ]
    return [p for p in found if isinstance(p, Pod) and _evictable(p)]


async def handle(
    api: kr8s.asyncio.Api,
    instruction: shard_pb2.ReclaimInstruction,
    ack: Callable[[shard_pb2.ReclaimAck], None],
    clock: Clock = REAL_CLOCK,
    *,
    recorder: Recorder | None = None,
) -> dict[str, str]:
    """Drain every node of the instruction; returns each node's final phase."""
    recorder = recorder or Recorder(api, events.COMPONENT, clock=clock)
    grace = (
        instruction.grace_period_seconds
        if instruction.grace_period_seconds > 0
        else (DEFAULT_GRACE_S)
    )
    started = []
    for name in instruction.nodes:
        try:  # the cordon patch itself says whether the Node exists (no read first)
            await Node(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}, api=api
            ).cordon()
        except kr8s.NotFoundError:
            log.warning("reclaimed node not found", extra={"node": name})
        started.append(name)
        await set_upcoming_phase(api, name, "Draining")
        try:
            await events.node_reclaimed(recorder, name, grace, instruction.preemptor_priority)
        except Exception as err:  # an Event explains; it must never stop a drain or its ack
            log.info("reclaim event not written", extra={"node": name, "error": str(err)})
    ack(shard_pb2.ReclaimAck(instruction_id=instruction.instruction_id, nodes_started=len(started)))
    deadline = clock.monotonic() + grace
    outcome: dict[str, str] = {}
    for name in started:
        while True:
            pods = await _pods_on(api, name)
            results = [await _evict(api, pod) for pod in pods]
            if all(results):
                await set_upcoming_phase(api, name, "Drained")
                outcome[name] = "Drained"
                break
            if clock.monotonic() >= deadline:
                left = sum(not r for r in results)
                await set_upcoming_phase(
                    api,
                    name,
                    "Draining",
                    error=f"drain exceeded its {grace}s grace: {left} pods still protected "
                    "by a disruption budget",
                )
                outcome[name] = "Draining"
                break
            await clock.sleep(RETRY_S)
    return outcome
