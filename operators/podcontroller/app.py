"""The pod controller process: kopf watches Pods; each unschedulable one gets a CapacityRequest.

One CR per pod, named after the pod's UID (and labelled `owned-by-pod` with it) and
owned by the pod. Deleted, terminating and terminal pods lose theirs at once, by
name; garbage collection is the fallback for pods deleted while this process was
down. In `per-pod` mode every non-terminal pod gets one. A new request reads Pending
without a status write (the CRD defaults the phase). A pod the scheduler could
not place gets one `WaitingForCapacity` Event, and a `NodeComing` one when the
operator says a machine for it is coming (`events.NodeComingRelay`); a pod that
never waits gets none, so per-pod mode costs one API call per pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kopf
import kr8s
import kr8s.asyncio
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from bigfleet import kopf_loop, kube_budget, kube_wait, leader, quantity
from bigfleet import metrics as metrics_http
from bigfleet.crd import CapacityRequest
from bigfleet.operators.podcontroller import derive, events
from bigfleet.recorder import Involved, Recorder
from bigfleet.supervise import Loops

log = logging.getLogger(__name__)
Mode = Literal["unschedulable-only", "per-pod"]


def load_defaults(path: Path | None) -> dict[str, dict[str, str]]:
    """PriorityClass name -> penalties; a value that is not a quantity fails startup."""
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    for values in data.values():
        for key in ("interruptionPenalty", "reclamationPenalty"):
            if key in values:
                quantity.parse(str(values[key]))  # raises InvalidQuantity
    return {str(k): {kk: str(vv) for kk, vv in v.items()} for k, v in data.items()}


@dataclass(frozen=True, kw_only=True)
class PodControllerSettings:
    kubeconfig: Path | None = None  # None: kubectl's order, in-cluster last
    mode: Mode = "unschedulable-only"
    defaults: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    metrics_addr: str = "0.0.0.0:8080"
    concurrency: int = 16  # pods reconciled at once
    leader_election: leader.LeaderElection | None = None  # None: this replica always works


class PodReconciler:
    def __init__(
        self,
        api: kr8s.asyncio.Api,
        settings: PodControllerSettings,
        registry: CollectorRegistry,
        recorder: Recorder | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.recorder = recorder or Recorder(api, events.COMPONENT)
        self.reconciles = Counter(
            "bigfleet_unschedulable_pod_controller_reconciles_total",
            "Pod reconciles by outcome.",
            ["outcome"],
            registry=registry,
        )
        # The pods whose CR exists, by the CR's (namespace, name): saves a create per
        # event and the NodeComing relay a read. The UIDs told they wait. Both forget a
        # pod when it is deleted.
        self._requests: dict[tuple[str, str], Involved] = {}
        self._told: set[str] = set()
        self._ended: set[str] = set()  # UIDs of terminal pods whose CR is deleted
        # kopf runs every pod's handler at once: this bounds the pods reconciled together,
        # as the client's budget (bigfleet.kube_budget) bounds the calls in flight.
        self._calls = asyncio.Semaphore(settings.concurrency)

    async def _delete(self, namespace: str, request: str) -> None:
        """Delete the request by its name (one call); one already gone is fine."""
        with contextlib.suppress(kr8s.NotFoundError):
            await CapacityRequest.named(request, self.api, namespace).delete()

    async def deleted(self, pod: Mapping[str, Any]) -> None:
        """The pod is gone: delete its request now rather than leave it to garbage
        collection, which takes a while; meanwhile the pod's replacement has its own
        request and the replica would count twice."""
        meta = pod["metadata"]
        namespace, request = _request_of(meta)
        try:
            if (namespace, request) in self._requests:
                async with self._calls:
                    await self._delete(namespace, request)
                self.reconciles.labels("pod_deleted").inc()
        finally:  # if the delete failed, garbage collection still removes the request
            self.forget(meta)
            self._ended.discard(meta["uid"])

    def forget(self, meta: Mapping[str, Any]) -> None:
        """The pod's request is gone or going: forget the pod (by its metadata)."""
        self._requests.pop(_request_of(meta), None)
        self._told.discard(meta["uid"])

    def known(self, namespace: str, request: str) -> events.Known:
        """What the NodeComing relay needs of a request this controller raised since it
        started: its pod, and whether the pod was told it waits."""
        pod = self._requests.get((namespace, request))
        if pod is None:
            return events.UNKNOWN
        return events.Known(pod, waited=pod.uid in self._told)

    def _remember(self, meta: Mapping[str, Any]) -> None:
        self._requests[_request_of(meta)] = events.pod(meta["namespace"], meta["name"], meta["uid"])

    async def reconcile(self, pod: Mapping[str, Any]) -> str:
        async with self._calls:
            outcome = await self._reconcile(pod)
        self.reconciles.labels(outcome).inc()
        return outcome

    async def _reconcile(self, pod: Mapping[str, Any]) -> str:
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if derive.terminal(pod):
            if uid not in self._ended:  # a terminating pod has more events till it is gone
                await self._delete(*_request_of(meta))
                self.forget(meta)
                self._ended.add(uid)
            return "pod_terminal"
        waiting = derive.unschedulable(pod)
        if not (waiting or self.settings.mode == "per-pod"):
            return "not_wanted"
        known = _request_of(meta) in self._requests
        outcome = "cr_exists" if known else await self._create(pod)
        if waiting and uid not in self._told:
            # Said once per pod, also when its request was raised before it had to wait.
            self._told.add(uid)
            try:
                request = derive.request_name(name, uid)
                await events.waiting(self.recorder, events.pod(namespace, name, uid), request)
            except Exception as err:  # Events explain; the request is what counts
                log.info("event not written", extra={"pod": name, "error": str(err)})
        return outcome

    async def _create(self, pod: Mapping[str, Any]) -> str:
        """Raise the pod's CapacityRequest: one create, no read first and no status write."""
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        body = CapacityRequest.manifest(
            # Named after the pod's UID: a second create for the same pod (a restart of
            # this controller, a replayed event) is refused, so no lookup first.
            derive.request_name(name, uid),
            derive.capacity_request_spec(pod, self.settings.defaults),
            namespace=namespace,
            labels={derive.OWNER_LABEL: uid},
        )
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid, "controller": True}
        ]
        request = CapacityRequest(body, api=self.api)
        try:
            await request.create()
        except kr8s.ServerError as err:
            if err.response is None or err.response.status_code != 409:
                raise
            self._remember(meta)
            return "cr_exists"
        self._remember(meta)
        return "cr_created"


def _request_of(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the CR this controller raises for the pod of `meta`."""
    return meta["namespace"], derive.request_name(meta["name"], meta["uid"])


def registry(reconciler: PodReconciler) -> kopf.OperatorRegistry:
    handlers = kopf_loop.new_registry()

    @kopf.on.event("", "v1", "pods", registry=handlers)
    async def pod_event(event: Mapping[str, Any], **_: Any) -> None:
        try:
            if event.get("type") == "DELETED":
                await reconciler.deleted(event["object"])
            else:
                await reconciler.reconcile(event["object"])
        # A spec the CRD model refuses would be refused by the API server too.
        except (kr8s.ServerError, ValidationError) as err:
            reconciler.reconciles.labels("error").inc()
            log.warning("pod reconcile failed", extra={"error": str(err)})

    return handlers


async def run(settings: PodControllerSettings, stop: asyncio.Event) -> None:
    """Reconcile pods until `stop` is set: kopf stops on it, and the NodeComing relay ends
    with kopf. With leader election, only while this replica leads; LeadershipLost when
    the lease could not be renewed (the process ends, to come back as a standby)."""
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    api = await kube_wait.until_ready(
        lambda: kr8s.asyncio.api(kubeconfig=kubeconfig),
        stop,
        resource="CapacityRequest",
        component="pod controller",
    )
    if api is None:
        return  # stopped before Kubernetes answered
    api = kube_budget.budgeted(api)
    prometheus = CollectorRegistry()
    recorder = Recorder(api, events.COMPONENT)
    reconciler = PodReconciler(api, settings, prometheus, recorder)
    relay = events.NodeComingRelay(api, recorder, reconciler.known)
    loops = Loops(prometheus)
    leading = Gauge(
        "bigfleet_pod_controller_leader",
        "1 while this replica leads (works); 0 while it stands by for the Lease.",
        registry=prometheus,
    )
    election = settings.leader_election
    lock = (
        leader.LeaseLock(
            api, namespace=election.namespace, name=election.name, identity=election.identity
        )
        if election is not None
        else None
    )
    http = metrics_http.serve(settings.metrics_addr, prometheus)
    try:
        if lock is not None and not await lock.acquire(stop):
            return  # stopped while standing by
        leading.set(1)
        try:
            async with asyncio.TaskGroup() as group:
                # Side loops: they end when kopf does.
                sides = [group.create_task(loops.run("pod_controller_node_coming", relay.run))]
                if lock is not None:
                    sides.append(group.create_task(lock.keep(stop)))
                try:
                    await kopf_loop.run(registry(reconciler), settings.kubeconfig, stop)
                finally:
                    for side in sides:
                        side.cancel()
        finally:
            leading.set(0)
            if lock is not None:
                await lock.release()
        if lock is not None and lock.lost is not None:
            raise lock.lost
    finally:
        if http is not None:
            http.shutdown()
