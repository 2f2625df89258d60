"""Kubernetes Events and conditions that explain what BigFleet does to an object.

`kubectl describe capacityrequest` then says why a request was left out, when it was
acknowledged, that it waits for capacity or that a machine for it is coming. Each Event
is built by one small function and written through the shared recorder
(`bigfleet.recorder`): it names the object with its uid, so `describe` lists it, and a
reason said again bumps the count of the Event already written.
"""

from __future__ import annotations

import contextlib

import kr8s

from bigfleet import capacity_events
from bigfleet.crd import API_VERSION
from bigfleet.crd.models import CapacityRequestStatus, RequestCondition
from bigfleet.operators.operator.capacity_requests import patch_status
from bigfleet.recorder import EventType, Involved, Recorder
from bigfleet.timestamps import rfc3339

COMPONENT = capacity_events.OPERATOR
UNTRANSLATABLE = "Untranslatable"


def request(namespace: str, name: str) -> Involved:
    """A CapacityRequest as an Event's object; the recorder finds its uid."""
    return Involved(api_version=API_VERSION, kind="CapacityRequest", name=name, namespace=namespace)


async def _on_request(
    recorder: Recorder,
    namespace: str,
    name: str,
    reason: str,
    message: str,
    type_: EventType = "Normal",
) -> None:
    await recorder.record(request(namespace, name), reason, message, type_)


async def untranslatable(recorder: Recorder, namespace: str, name: str, why: str) -> None:
    """Warning Event plus Translatable=False on a request left out of the roll-up."""
    await _on_request(
        recorder, namespace, name, UNTRANSLATABLE, f"left out of the roll-up: {why}", "Warning"
    )
    condition = RequestCondition(
        type="Translatable",
        status="False",
        reason=UNTRANSLATABLE,
        message=why,
        last_transition_time=rfc3339(),
    )
    with contextlib.suppress(kr8s.NotFoundError):
        await patch_status(
            recorder.api, namespace, name, CapacityRequestStatus(conditions=(condition,))
        )


async def node_reclaimed(
    recorder: Recorder, node: str, grace_s: int, preemptor_priority: int
) -> None:
    """On the Node: BigFleet is taking it back, and why."""
    why = (
        f"for a workload of priority {preemptor_priority}"
        if preemptor_priority
        else "no demand needs it any more"
    )
    await recorder.record(
        Involved(api_version="v1", kind="Node", name=node),
        "BigFleetReclaim",
        f"cordoned; draining within {grace_s}s: {why}",
    )


async def acknowledged(recorder: Recorder, namespace: str, name: str) -> None:
    await _on_request(
        recorder,
        namespace,
        name,
        "Acknowledged",
        "the shard received this request in a roll-up and works on it",
    )


async def waiting(recorder: Recorder, namespace: str, name: str) -> None:
    await _on_request(
        recorder,
        namespace,
        name,
        capacity_events.WAITING_FOR_CAPACITY,
        "no machine of this shape is available in the fleet now; the request waits "
        "for capacity or for lower-priority work to be preempted",
        "Warning",
    )


async def node_coming(
    recorder: Recorder, namespace: str, name: str, machine: str, rack: str
) -> None:
    """The machine and its rack also go on the Event as annotations: the pod controller
    tells the request's Pod from them, in the same words."""
    await recorder.record(
        request(namespace, name),
        capacity_events.NODE_COMING,
        capacity_events.node_coming(machine, rack, "this request"),
        annotations={
            capacity_events.MACHINE_ANNOTATION: machine,
            capacity_events.RACK_ANNOTATION: rack,
        },
    )


async def unsatisfied(
    recorder: Recorder, namespace: str, name: str, reason: str, message: str
) -> None:
    """Warning Event when the shard's verdict turns a request Satisfied=False: the reason and
    the sentence of the condition, once per request and reason (the caller remembers)."""
    await _on_request(recorder, namespace, name, reason, message, "Warning")
