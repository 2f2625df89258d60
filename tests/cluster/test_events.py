"""Events users can see: `kubectl describe` lists what the operator and the pod controller
say about a CapacityRequest and its Pod, and a reason said again is one Event counted twice.

Against the real API server and the real kubectl: the operator (with a scripted shard) and
the pod controller write Events; kubectl shows them only when `involvedObject.uid` is the
object's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Node, Pod

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, CapacityRequest, UpcomingNode
from bigfleet.operators.operator import events as operator_events
from bigfleet.operators.podcontroller import events as pod_events
from bigfleet.recorder import Recorder
from bigfleet.wire import provider_pb2, shard_pb2
from tests.cluster.test_operator_session import OperatorRig
from tests.cluster.test_pod_controller import ControllerRig
from tests.support.waiting import until

S = provider_pb2.MachineState


@pytest.fixture
def operator_rig(control_plane: LocalControlPlane) -> Iterator[OperatorRig]:
    rig = OperatorRig(control_plane)
    rig.start()
    yield rig
    rig.stop()


@pytest.fixture
def pod_controller(control_plane: LocalControlPlane) -> Iterator[ControllerRig]:
    rig = ControllerRig(control_plane)
    rig.start()
    yield rig
    rig.stop()


async def _events(api: kr8s.asyncio.Api, namespace: str, name: str) -> list[dict[str, Any]]:
    found = [
        e
        async for e in api.async_get(
            "events", namespace=namespace, field_selector=f"involvedObject.name={name}"
        )
    ]
    return [dict(e.raw) for e in found]


def _describe(control_plane: LocalControlPlane, *what: str) -> str:
    return control_plane.kubectl("describe", *what).stdout


def _events_section(text: str) -> str:
    return text.rpartition("Events:")[2]


async def test_describe_capacityrequest_lists_the_operators_events_and_counts_repeats(
    api: kr8s.asyncio.Api,
    namespace: str,
    operator_rig: OperatorRig,
    control_plane: LocalControlPlane,
) -> None:
    request = CapacityRequest(
        {
            "apiVersion": API_VERSION,
            "kind": "CapacityRequest",
            "metadata": {"name": "trainer", "namespace": namespace},
            "spec": {
                "resources": {"cpu": "8"},
                "priority": 613,
                "requirements": [{"key": "gpu", "operator": "In", "values": ["h100"]}],
            },
        },
        api=api,
    )
    await request.create()
    uid = request.raw["metadata"]["uid"]

    async def reasons() -> set[str]:
        return {e["reason"] for e in await _events(api, namespace, "trainer")}

    await until(lambda: _has(reasons(), "Acknowledged"), "the Acknowledged Event on the request")
    # The shard says a machine that fits is joining, in rack r7.
    update = shard_pb2.NodeStateUpdate(
        supersedes_key="node:m-events",
        machine_id="m-events",
        cluster_id="c1",
        state=S.MACHINE_STATE_CONFIGURING,
        labels={"gpu": "h100", "rack": "r7"},
    )
    operator_rig.send(shard_pb2.ShardMessage(node_state_update=update))
    await until(lambda: _has(reasons(), "NodeComing"), "the NodeComing Event on the request")

    written = await _events(api, namespace, "trainer")
    assert {e["involvedObject"].get("uid") for e in written} == {uid}
    (coming,) = [e for e in written if e["reason"] == "NodeComing"]
    assert coming["message"] == (
        "machine m-events in rack r7, which fits this request, is joining the cluster"
    )
    assert coming["metadata"]["annotations"] == {
        "bigfleet.lucy.sh/machine-id": "m-events",
        "bigfleet.lucy.sh/rack": "r7",
    }

    # The same shortfall told twice (the verdict poller tells it again after the request
    # was satisfied in between) is one Event counted twice.
    assert operator_rig.session is not None
    recorder = operator_rig.session.recorder
    for _ in range(2):
        await _in_rig(
            operator_rig,
            operator_events.unsatisfied(
                recorder, namespace, "trainer", "NoMatchingSupply", "no machine fits"
            ),
        )
    starved = [
        e for e in await _events(api, namespace, "trainer") if e["reason"] == "NoMatchingSupply"
    ]
    assert len(starved) == 1 and starved[0]["count"] == 2

    section = _events_section(
        _describe(control_plane, "capacityrequest", "trainer", "-n", namespace)
    )
    assert "<none>" not in section
    for reason in ("Acknowledged", "NodeComing", "NoMatchingSupply"):
        assert reason in section, section
    assert "machine m-events in rack r7" in section
    assert "(x2 over" in section, section
    # What this test made goes: other tests' operators roll up every request of the
    # cluster, and UpcomingNodes are cluster-scoped.
    await request.delete()
    await (await until(lambda: _upcoming(api, "un-m-events"), "the UpcomingNode")).delete()


async def test_a_reclaimed_node_shows_the_reclaim_event(
    api: kr8s.asyncio.Api, control_plane: LocalControlPlane
) -> None:
    node = Node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-events"}}, api=api)
    await node.create()
    # No uid given: the recorder reads the Node once.
    await operator_events.node_reclaimed(
        Recorder(api, operator_events.COMPONENT), "n-events", 30, 0
    )
    section = _events_section(_describe(control_plane, "node", "n-events"))
    assert "BigFleetReclaim" in section, section
    assert "draining within 30s: no demand needs it any more" in section
    await node.delete()  # cluster-scoped, so shared with every other test


async def test_the_pod_gets_waiting_then_node_coming_from_the_pod_controller(
    api: kr8s.asyncio.Api,
    namespace: str,
    pod_controller: ControllerRig,
    control_plane: LocalControlPlane,
) -> None:
    pod = Pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "waiter", "namespace": namespace},
            "spec": {
                "nodeSelector": {"gpu": "h100"},
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}
                ],
            },
        },
        api=api,
    )
    await pod.create()
    unschedulable = {
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "-"}
        ]
    }
    await pod.patch({"status": unschedulable}, subresource="status")

    async def requests() -> list[CapacityRequest]:
        found = [cr async for cr in api.async_get(CapacityRequest, namespace=namespace)]
        return [cr for cr in found if isinstance(cr, CapacityRequest)]

    (request,) = await until(requests, "a CapacityRequest for the pod")

    async def pod_reasons() -> set[str]:
        return {e["reason"] for e in await _events(api, namespace, "waiter")}

    await until(lambda: _has(pod_reasons(), "WaitingForCapacity"), "WaitingForCapacity on the pod")

    # The operator tells the request a machine is coming; the pod controller tells the pod.
    await operator_events.node_coming(
        Recorder(api, operator_events.COMPONENT), namespace, request.name, "m-pod", "r2"
    )
    await until(lambda: _has(pod_reasons(), "NodeComing"), "NodeComing on the pod")

    on_pod = await _events(api, namespace, "waiter")
    assert {e["involvedObject"]["uid"] for e in on_pod} == {pod.raw["metadata"]["uid"]}
    assert {e["source"]["component"] for e in on_pod} == {pod_events.COMPONENT}
    section = _events_section(_describe(control_plane, "pod", "waiter", "-n", namespace))
    assert "WaitingForCapacity" in section, section
    assert f"CapacityRequest {request.name} asks BigFleet" in section
    assert (
        f"machine m-pod in rack r2, which fits its CapacityRequest {request.name}, "
        "is joining the cluster"
    ) in section
    await pod.delete(grace_period=0)
    # Other tests roll up every request; a garbage collector, when one runs, may be first.
    with contextlib.suppress(kr8s.NotFoundError):
        await request.delete()


async def test_an_event_the_api_server_no_longer_has_is_written_anew(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    request = CapacityRequest(
        {
            "apiVersion": API_VERSION,
            "kind": "CapacityRequest",
            "metadata": {"name": "expiring", "namespace": namespace},
            "spec": {"resources": {"cpu": "1"}, "priority": 100},
        },
        api=api,
    )
    await request.create()
    recorder = Recorder(api, operator_events.COMPONENT)
    await operator_events.waiting(recorder, namespace, "expiring")
    (first,) = await _events(api, namespace, "expiring")
    async with api.call_api(
        "DELETE", namespace=namespace, url=f"events/{first['metadata']['name']}"
    ):
        pass  # what the Event TTL does after an hour
    await operator_events.waiting(recorder, namespace, "expiring")
    (again,) = await _events(api, namespace, "expiring")
    assert again["metadata"]["name"] != first["metadata"]["name"]
    assert again["count"] == 1
    assert again["involvedObject"]["uid"] == request.raw["metadata"]["uid"]
    await request.delete()  # other tests' operators roll up every request of the cluster


async def _upcoming(api: kr8s.asyncio.Api, name: str) -> UpcomingNode | None:
    try:
        return await UpcomingNode.get(name, api=api)
    except kr8s.NotFoundError:
        return None


async def _has(reasons: Any, reason: str) -> bool:
    return reason in await reasons


async def _in_rig(rig: OperatorRig, coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on the rig's own loop (its API client lives there)."""
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, rig.loop))
