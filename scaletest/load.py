"""The load: the profile's Deployments in every simulated cluster, a census of what the
chain made of them, and churn (Pods evicted, so their controllers ask again)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Deployment, Namespace, Pod
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from bigfleet.controlplane.chain import pod_spec
from bigfleet.controlplane.objects import api_time, scheduled_at
from bigfleet.crd import API_VERSION
from bigfleet.scaletest.profile import Profile

NAMESPACE = "scaletest"
# A busy API server answers 504 or times out now and then; the census is read again
# rather than failing the run (a standing outage still does, after the last attempt).
_api_retry = retry(
    retry=retry_if_exception_type((kr8s.ServerError, kr8s.APITimeoutError, httpx.TransportError)),
    stop=stop_after_attempt(6),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)

LABEL = "bigfleet.lucy.sh/scaletest"
GANG_LABEL = "bigfleet.lucy.sh/scaletest-gang"
RAMP_STEP_S = 5.0  # the load grows this often while it ramps


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def priority_class(name: str) -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": 1000}  # fmt: skip


def priority_class_names(profile: Profile) -> list[str]:
    return sorted({w.priority_class for w in profile.workloads if w.priority_class})


def manifests(profile: Profile) -> list[dict[str, Any]]:
    """What `Load.install` creates in every simulated cluster, in order."""
    return [
        namespace(),
        *(priority_class(name) for name in priority_class_names(profile)),
        *deployments(profile),
    ]


def deployments(profile: Profile, share: float = 1.0) -> list[dict[str, Any]]:
    """Every Deployment a cluster runs `share` of the way through the ramp: each plain
    workload at that share of its replicas, each gang workload with that share of its
    gangs, whole (a gang is never partly there)."""
    out = []
    for w in profile.workloads:
        if not w.gangs:
            replicas = round(w.replicas * share)
            out.append(deployment(w.name, replicas, w.cpu, w.priority_class))
        for i in range(math.floor(w.gangs * share + 1e-9)):
            gang = f"{w.name}-g{i}"
            body = deployment(gang, w.replicas, w.cpu, w.priority_class, workload=w.name)
            # Every member must sit in the domain of the first: required pod affinity to
            # the gang's own label, which the scheduler lets the first member satisfy.
            body["spec"]["template"]["spec"]["affinity"] = {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {GANG_LABEL: gang}},
                            "topologyKey": w.colocate,
                        }
                    ]
                }
            }
            out.append(body)
    return out


def deployment(
    name: str, replicas: int, cpu: str, priority_class: str, workload: str = ""
) -> dict[str, Any]:
    """`name` is the workload's, or for a gang the gang's (labelled with both)."""
    labels = {LABEL: workload or name} | ({GANG_LABEL: name} if workload else {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(cpu, priority_class)},
        },
    }


@dataclass
class Census:
    """What the clusters hold at one moment."""

    pods: int = 0
    bound: dict[str, str] = field(default_factory=dict)  # "cluster/pod" -> node
    requests: int = 0  # CapacityRequests of the load's namespace
    nodes: set[str] = field(default_factory=set)  # "cluster/node"
    # (created, seconds to bind) per bound Pod; created as a Unix time (API server clock)
    binds: list[tuple[float, float]] = field(default_factory=list)


class Load:
    def __init__(self, profile: Profile, apis: Mapping[str, kr8s.asyncio.Api], seed: int) -> None:
        self.profile = profile
        self.apis = apis
        self.random = random.Random(seed)
        self.evicted: set[str] = set()  # "cluster/pod" deleted by churn
        # Per cluster, the replicas each Deployment made so far was asked for.
        self._replicas: dict[str, dict[str, int]] = {cluster: {} for cluster in apis}

    async def install(self, share: float = 1.0) -> None:
        """The namespace, priority classes and Deployments, at `share` of the ramp."""
        for api in self.apis.values():
            await Namespace(namespace(), api=api).create()
            for name in priority_class_names(self.profile):
                async with api.call_api(
                    "POST", base="/apis/scheduling.k8s.io", version="v1",
                    url="priorityclasses", json=priority_class(name),
                ):  # fmt: skip
                    pass
        await self.grow(share)

    async def grow(self, share: float) -> None:
        """Bring every cluster's Deployments to `share` of the ramp: new ones created,
        the others scaled."""
        for cluster, api in self.apis.items():
            made = self._replicas[cluster]
            for body in deployments(self.profile, share):
                name, replicas = body["metadata"]["name"], body["spec"]["replicas"]
                if name not in made:
                    await _create(Deployment(body, api=api))
                elif made[name] != replicas:
                    await _scale(Deployment(body, api=api), replicas)
                made[name] = replicas

    async def ramp(self, seconds: float, step_s: float = RAMP_STEP_S) -> None:
        """From where `install` left the Deployments to their full size over `seconds`."""
        steps = max(1, math.ceil(seconds / step_s))
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            await self.grow(step / steps)

    @_api_retry
    async def census(self) -> Census:
        out = Census()
        for cluster, (pods, requests, nodes) in zip(
            self.apis,
            await asyncio.gather(*(_cluster_census(api) for api in self.apis.values())),
            strict=True,
        ):
            out.requests += requests
            out.nodes.update(f"{cluster}/{name}" for name in nodes)
            for pod in pods:
                out.pods += 1
                node = pod["spec"].get("nodeName")
                if node:
                    out.bound[f"{cluster}/{pod['metadata']['name']}"] = node
                    scheduled = scheduled_at(pod)
                    if scheduled is not None:
                        created = api_time(pod["metadata"]["creationTimestamp"])
                        out.binds.append((created, max(0.0, scheduled - created)))
        return out

    async def churn(self, count: int, census: Census) -> int:
        """Evict `count` bound Pods chosen at random; returns how many went."""
        victims = self.random.sample(sorted(census.bound), min(count, len(census.bound)))
        gone = 0
        for key in victims:
            cluster, name = key.split("/", 1)
            pod = Pod(
                {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": name, "namespace": NAMESPACE}},
                api=self.apis[cluster],
            )  # fmt: skip
            if not await _evict(pod):
                continue
            self.evicted.add(key)
            gone += 1
        return gone


@_api_retry
async def _create(deployment: Deployment) -> None:
    try:
        await deployment.create()
    except kr8s.ServerError as err:  # made by an attempt whose answer was lost
        if err.response is None or err.response.status_code != 409:
            raise


@_api_retry
async def _scale(deployment: Deployment, replicas: int) -> None:
    await deployment.patch({"spec": {"replicas": replicas}})


@_api_retry
async def _evict(pod: Pod) -> bool:
    """Delete at once; False when it is already gone."""
    try:
        await pod.delete(grace_period=0)
    except kr8s.NotFoundError:
        return False
    return True


async def _list(api: kr8s.asyncio.Api, **where: Any) -> dict[str, Any]:
    """One list call, answered whole and read as plain JSON: thousands of Pods in pages
    of kr8s objects cost the API server and this process many times more."""
    async with api.call_api("GET", **where) as response:
        found: dict[str, Any] = response.json()
    return found


async def _cluster_census(api: kr8s.asyncio.Api) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The load's Pods, how many CapacityRequests it has, and the Nodes' names."""
    group, version = API_VERSION.split("/")
    pods, requests, nodes = await asyncio.gather(
        _list(api, version="v1", namespace=NAMESPACE, url="pods"),
        # Only the count matters: one item, and the server says how many remain.
        _list(api, base=f"/apis/{group}", version=version, namespace=NAMESPACE,
              url="capacityrequests", params={"limit": 1}),
        _list(api, version="v1", url="nodes"),
    )  # fmt: skip
    counted = len(requests.get("items") or []) + int(
        (requests.get("metadata") or {}).get("remainingItemCount") or 0
    )
    return (
        pods.get("items") or [],
        counted,
        [n["metadata"]["name"] for n in nodes.get("items") or []],
    )
