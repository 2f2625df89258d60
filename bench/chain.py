"""`bigfleet bench chain`: unschedulable Pods to bound Pods through the whole chain.

Starts its own local control plane and every component as a process (see
`chain.py`), with an Idle fleet big enough for the Pods (one CPU each, eight
to a machine) and the pod controller in per-pod mode. One Deployment asks
for all the Pods at once (the controller-manager creates them); the bench
polls until all are bound, then reads the API server's own timestamps
(whole seconds): `bind_s` is, per Pod, from its CapacityRequest's creation
to the Pod's PodScheduled condition turning True; `all_bound_s` is from the
first Pod's creation to the last Pod scheduled. `calls_per_pod` counts the
API server's requests (its own `apiserver_request_total`, watches left out)
from before the Deployment until all are bound, per Pod, by verb and resource:
every client's calls, the controller-manager's, scheduler's and kwok's too.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Deployment, Node
from prometheus_client.parser import text_string_to_metric_families

from bigfleet.controlplane.chain import Chain, pod_spec
from bigfleet.controlplane.objects import api_time, raw, scheduled_at
from bigfleet.stats import percentiles

PODS_PER_MACHINE = 8
_POLL_S = 1.0
Progress = Callable[[int], None]  # pods bound so far


@dataclass(frozen=True)
class ChainBench:
    pods: int
    all_bound_s: float
    bind_s: dict[str, float]
    nodes: int
    calls_per_pod: dict[str, float]  # "VERB resource[/subresource]" -> requests per Pod
    events_per_pod: dict[str, float]  # "component reason" -> Events written per Pod

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _deployment(pods: int) -> dict[str, Any]:
    labels = {"bench": "chain"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec("1"),
            },
        },
    }


def _requests(chain: Chain) -> dict[str, float]:
    return request_counts(chain.control_plane.kubectl("get", "--raw", "/metrics").stdout)


def request_counts(text: str) -> dict[str, float]:
    """The API server's requests so far by "VERB resource[/subresource]", watches left out,
    from its /metrics text."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("verb") == "WATCH":
                continue
            what = labels.get("resource", "") or "(none)"
            if labels.get("subresource"):
                what += "/" + labels["subresource"]
            key = f"{labels.get('verb', '')} {what}"
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def per_pod(before: dict[str, float], after: dict[str, float], pods: int) -> dict[str, float]:
    """Requests per Pod between two counts, the busiest first; below 0.01 a Pod left out."""
    per_pod = {k: (v - before.get(k, 0.0)) / pods for k, v in after.items()}
    kept = sorted(((round(v, 2), k) for k, v in per_pod.items() if v >= 0.01), reverse=True)
    return {"total": round(sum(per_pod.values()), 2)} | {k: v for v, k in kept}


async def _measure(chain: Chain, pods: int, progress: Progress | None) -> ChainBench:
    api = await kr8s.asyncio.api(kubeconfig=str(chain.control_plane.kubeconfig_path))
    before = _requests(chain)
    await Deployment(_deployment(pods), api=api).create()
    bound: dict[str, dict[str, Any]] = {}
    while len(bound) < pods:
        await asyncio.sleep(_POLL_S)
        async for pod in api.async_get("pods", namespace="default", label_selector="bench=chain"):
            found = raw(pod)
            if found["spec"].get("nodeName"):
                bound[found["metadata"]["name"]] = found
        if progress is not None:
            progress(len(bound))
    after = _requests(chain)
    # Server-side times (whole seconds): the poller's own pace does not enter the figures.
    created = min(api_time(p["metadata"]["creationTimestamp"]) for p in bound.values())
    scheduled = {name: scheduled_at(pod) for name, pod in bound.items()}
    requested: dict[str, float] = {}
    async for cr in api.async_get("capacityrequests", namespace="default"):
        meta = raw(cr)["metadata"]
        owner = (meta.get("ownerReferences") or [{}])[0].get("name", "")
        requested[owner] = api_time(meta["creationTimestamp"])
    waits = sorted(
        max(0.0, at - requested[name])
        for name, at in scheduled.items()
        if at is not None and name in requested
    )
    nodes = [n async for n in api.async_get(Node)]
    written: dict[str, float] = {}
    async for event in api.async_get("events", namespace=kr8s.ALL):
        body = raw(event)
        who = body.get("reportingComponent") or (body.get("source") or {}).get("component", "")
        key = f"{who or '(unnamed)'} {body.get('reason', '')}"
        written[key] = written.get(key, 0.0) + 1
    return ChainBench(
        pods=pods,
        all_bound_s=round(max(a for a in scheduled.values() if a is not None) - created, 2),
        bind_s=percentiles(waits, digits=2),
        nodes=len(nodes),
        calls_per_pod=per_pod(before, after, pods),
        events_per_pod=per_pod({}, written, pods),
    )


def run(pods: int, progress: Progress | None = None) -> ChainBench:
    machines = math.ceil(pods / PODS_PER_MACHINE) + 2
    fleet: dict[str, object] = {"pools": [{"prefix": "m", "count": machines, "state": "idle"}]}
    with tempfile.TemporaryDirectory(prefix="bigfleet-bench-chain-") as tmp:
        chain = Chain(
            Path(tmp) / "chain",
            fleet,
            shard_args=("--cycle-interval", "1", "--execute-concurrency", "32"),
            rollup_interval_s=1.0,
            # Every Pod counted: in unschedulable-only mode a Pod the scheduler places on a
            # node meant for another never gets a request, and the burst under-counts.
            pod_controller_mode="per-pod",
        )
        chain.start()
        try:
            return asyncio.run(_measure(chain, pods, progress))
        finally:
            chain.stop()
