"""Kubernetes Events and conditions that explain what BigFleet does to an object.

`kubectl describe capacityrequest` then says why a request was left out or
when it was acknowledged. Each Event is built by one small function.
"""

from __future__ import annotations

import contextlib

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Event

from bigfleet.crd import API_VERSION
from bigfleet.crd.models import CapacityRequestStatus, RequestCondition
from bigfleet.operators.operator.capacity_requests import patch_status
from bigfleet.timestamps import rfc3339

COMPONENT = "bigfleet-operator"
UNTRANSLATABLE = "Untranslatable"


async def _emit(
    api: kr8s.asyncio.Api,
    namespace: str,
    name: str,
    reason: str,
    message: str,
    kind: str = "Normal",
    involved: dict[str, str] | None = None,
) -> None:
    now = rfc3339()
    await Event(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": involved
            or {
                "apiVersion": API_VERSION,
                "kind": "CapacityRequest",
                "name": name,
                "namespace": namespace,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        },
        api=api,
    ).create()


async def untranslatable(api: kr8s.asyncio.Api, namespace: str, name: str, why: str) -> None:
    """Warning Event plus Translatable=False on a request left out of the roll-up."""
    await _emit(
        api, namespace, name, UNTRANSLATABLE, f"left out of the roll-up: {why}", kind="Warning"
    )
    condition = RequestCondition(
        type="Translatable",
        status="False",
        reason=UNTRANSLATABLE,
        message=why,
        last_transition_time=rfc3339(),
    )
    with contextlib.suppress(kr8s.NotFoundError):
        await patch_status(api, namespace, name, CapacityRequestStatus(conditions=(condition,)))


async def node_reclaimed(
    api: kr8s.asyncio.Api, node: str, grace_s: int, preemptor_priority: int
) -> None:
    """On the Node: BigFleet is taking it back, and why."""
    why = (
        f"for a workload of priority {preemptor_priority}"
        if preemptor_priority
        else "no demand needs it any more"
    )
    await _emit(
        api,
        "default",
        node,
        "BigFleetReclaim",
        f"cordoned; draining within {grace_s}s: {why}",
        involved={"apiVersion": "v1", "kind": "Node", "name": node},
    )


async def acknowledged(api: kr8s.asyncio.Api, namespace: str, name: str) -> None:
    await _emit(
        api,
        namespace,
        name,
        "Acknowledged",
        "the shard received this request in a roll-up and works on it",
    )


async def waiting(api: kr8s.asyncio.Api, namespace: str, name: str) -> None:
    await _emit(
        api,
        namespace,
        name,
        "WaitingForCapacity",
        "no machine of this shape is available in the fleet now; the request waits "
        "for capacity or for lower-priority work to be preempted",
        kind="Warning",
    )


async def node_coming(api: kr8s.asyncio.Api, namespace: str, name: str, machine: str) -> None:
    await _emit(
        api,
        namespace,
        name,
        "NodeComing",
        f"machine {machine}, which fits this request, is joining the cluster",
    )


async def unsatisfied(
    api: kr8s.asyncio.Api, namespace: str, name: str, reason: str, message: str
) -> None:
    """Warning Event when the shard's verdict turns a request Satisfied=False: the reason and
    the sentence of the condition, once per request and reason (the caller remembers)."""
    await _emit(api, namespace, name, reason, message, kind="Warning")
