"""The pod controller on the real API server, with kube-controller-manager's garbage collector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Pod
from prometheus_client import CollectorRegistry

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import CapacityRequest
from bigfleet.operators.podcontroller.app import PodControllerSettings, PodReconciler, run
from tests.cluster.test_chain import LoopThread
from tests.support.waiting import until


class ControllerRig:
    def __init__(self, control_plane: LocalControlPlane) -> None:
        self.thread = LoopThread()
        self.settings = PodControllerSettings(
            kubeconfig=control_plane.kubeconfig_path,
            metrics_addr="0",
            defaults={
                "bigfleet-test-ml": {"interruptionPenalty": "8192", "reclamationPenalty": "65536"}
            },
        )

    def start(self) -> None:
        async def main() -> None:
            self.stop_flag = asyncio.Event()
            await run(self.settings, self.stop_flag)

        self.future = asyncio.run_coroutine_threadsafe(main(), self.thread.loop)

    def stop(self) -> None:
        self.thread.loop.call_soon_threadsafe(self.stop_flag.set)
        self.future.result(30)
        self.thread.close()


@pytest.fixture
def pod_controller(control_plane: LocalControlPlane) -> Iterator[ControllerRig]:
    rig = ControllerRig(control_plane)
    rig.start()
    yield rig
    rig.stop()


async def test_unschedulable_pods_get_one_owned_request_each_and_lose_it_with_the_pod(
    api: kr8s.asyncio.Api,
    namespace: str,
    pod_controller: ControllerRig,
    controller_manager: LocalControlPlane,
) -> None:
    priority_class = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "bigfleet-test-ml"},
        "value": 5000,
    }
    controller_manager.kubectl("apply", "-f", "-", stdin=json.dumps(priority_class))
    pod = Pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "trainer", "namespace": namespace},
            "spec": {
                "priorityClassName": "bigfleet-test-ml",
                "nodeSelector": {"gpu": "a100"},
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
                    }
                ],
            },
        },
        api=api,
    )
    await pod.create()

    async def requests() -> list[CapacityRequest]:
        found = [cr async for cr in api.async_get(CapacityRequest, namespace=namespace)]
        return [cr for cr in found if isinstance(cr, CapacityRequest)]

    await asyncio.sleep(1)
    assert await requests() == []  # not yet unschedulable: nothing asked for
    unschedulable = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "no gpu nodes",
            }
        ]
    }
    await pod.patch({"status": unschedulable}, subresource="status")
    (request,) = await until(requests, "a CapacityRequest for the pod")
    spec = request.raw["spec"]
    assert spec["resources"] == {"cpu": "2", "memory": str(4 * 2**30)}
    assert spec["priority"] == 5000
    assert spec["requirements"] == [{"key": "gpu", "operator": "In", "values": ["a100"]}]
    assert (spec["interruptionPenalty"], spec["reclamationPenalty"]) == ("8192", "65536")
    owner = request.raw["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Pod", "trainer")
    assert request.raw["status"]["phase"] == "Pending"  # the CRD's default: nobody wrote it

    # More events for the same pod make no second request.
    await pod.patch({"metadata": {"labels": {"touched": "yes"}}})
    await asyncio.sleep(1.5)
    assert len(await requests()) == 1

    await pod.delete(grace_period=0)

    async def collected() -> bool:
        return await requests() == []

    await until(collected, "the garbage collector removes the request with its pod")


async def _per_pod_rig(api: kr8s.asyncio.Api, namespace: str) -> tuple[Pod, PodReconciler]:
    """A pod nobody schedules, and a per-pod reconciler driven by hand."""
    pod = Pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
        api=api,
    )
    await pod.create()
    return pod, PodReconciler(api, PodControllerSettings(mode="per-pod"), CollectorRegistry())


async def test_per_pod_mode_costs_one_call_a_pod_and_tells_only_pods_that_wait(
    api: kr8s.asyncio.Api, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod that never waits costs one create: the request reads Pending through the CRD's
    default, and no Event says it waits. When the scheduler cannot place it, one
    WaitingForCapacity Event, once; more events for the pod cost nothing."""
    pod, reconciler = await _per_pod_rig(api, namespace)
    calls: list[str] = []
    call_api = api.call_api

    def counting(method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        calls.append(f"{method} {kwargs.get('url', '')}")
        return call_api(method, *args, **kwargs)

    monkeypatch.setattr(api, "call_api", counting)

    async def reasons() -> list[str]:
        about = f"involvedObject.uid={pod.metadata.uid}"
        found = [
            e
            async for e in api.async_get(
                "events",
                namespace=namespace,
                field_selector=about,
            )
        ]
        return [e.raw["reason"] for e in found]

    assert await reconciler.reconcile(pod.raw) == "cr_created"
    assert calls == ["POST capacityrequests"]
    (request,) = [cr async for cr in api.async_get(CapacityRequest, namespace=namespace)]
    assert request.raw["status"]["phase"] == "Pending"
    assert await reconciler.reconcile(pod.raw) == "cr_exists"
    assert len(calls) == 1 + 1  # the list of requests above; the reconcile made no call

    waiting = {
        **pod.raw,
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
        },
    }
    calls.clear()
    assert await reconciler.reconcile(waiting) == "cr_exists"
    assert await reconciler.reconcile(waiting) == "cr_exists"
    assert len(calls) == 1, calls  # the Event, written once
    assert await until(reasons, "the pod told it waits") == ["WaitingForCapacity"]

    # Deleted (its replacement is on its way): the request goes at once, in one call.
    deleting = {**pod.raw, "metadata": {**pod.raw["metadata"], "deletionTimestamp": "now"}}
    calls.clear()
    assert await reconciler.reconcile(deleting) == "pod_terminal"
    assert await reconciler.reconcile(deleting) == "pod_terminal"
    assert calls == [f"DELETE capacityrequests/{request.name}"]
    assert [cr async for cr in api.async_get(CapacityRequest, namespace=namespace)] == []
    await reconciler.deleted(deleting)  # gone at last: nothing left to delete
    assert len(calls) == 1 + 1  # the list above


async def test_a_deleted_pods_request_goes_without_waiting_for_garbage_collection(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    """No controller-manager runs here, so nothing but the pod controller removes it."""
    pod, reconciler = await _per_pod_rig(api, namespace)
    assert await reconciler.reconcile(pod.raw) == "cr_created"
    await pod.delete(grace_period=0)
    await reconciler.deleted(pod.raw)
    assert [cr async for cr in api.async_get(CapacityRequest, namespace=namespace)] == []
