"""The chain on kind, across clusters: unschedulable Pods in a managed cluster become
CapacityRequests, its operator rolls them up to the shard in the management cluster,
the shard binds fake machines to that cluster, their UpcomingNodes turn Ready, the
machines join as Nodes, and the scheduler binds the Pods.

The join is the one step the test plays itself (`fleet.node_for`): the fake provider
runs in the management cluster and cannot reach a managed cluster's API server.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from e2e.environment import missing_prerequisite
from e2e.fleet import (
    INSTANCE_TYPE_LABEL,
    KWOK_ANNOTATION,
    NAMESPACE,
    SHARD_ID,
    SHARD_STATEFULSET,
    Cluster,
    demand_pod,
    node_for,
    phase,
    wait_until,
)

OWNER_LABEL = "bigfleet.lucy.sh/owned-by-pod"  # the pod controller's idempotency key

pytestmark = [
    pytest.mark.skipif(missing_prerequisite() is not None, reason=str(missing_prerequisite())),
    # Creating clusters and installing charts happens inside the first test's setup.
    pytest.mark.timeout(1800),
]


def fresh_namespace(cluster: Cluster) -> str:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


def launch(cluster: Cluster, namespace: str, count: int, cpu: str) -> list[str]:
    names = [f"demand-{i}" for i in range(count)]
    cluster.apply(*(demand_pod(name, namespace, cpu) for name in names))
    return names


def requests_by_pod(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    """The namespace's CapacityRequests, keyed by the UID of the pod that owns each."""
    found = cluster.items("capacityrequests", namespace, selector=OWNER_LABEL)
    return {cr["metadata"]["labels"][OWNER_LABEL]: cr for cr in found}


def wait_for_requests(cluster: Cluster, namespace: str, pods: list[str]) -> list[str]:
    """Wait until the pod controller made one request per pod and the operator's shard
    acknowledged all of them; returns the request names."""
    uids = {p["metadata"]["uid"] for p in cluster.items("pods", namespace, "app=e2e-demand")}
    assert len(uids) == len(pods)

    def acknowledged() -> list[str] | None:
        requests = requests_by_pod(cluster, namespace)
        if set(requests) != uids:
            return None
        if any(phase(cr) != "Acknowledged" for cr in requests.values()):
            return None
        return sorted(cr["metadata"]["name"] for cr in requests.values())

    return wait_until(acknowledged, "every pod's CapacityRequest Acknowledged")


def join_ready_machines(cluster: Cluster) -> set[str]:
    """Register a Node for every Ready UpcomingNode that has none yet; all their names."""
    names = set()
    for upcoming in cluster.items("upcomingnodes"):
        if phase(upcoming) == "Ready" and (upcoming.get("status") or {}).get("nodeRef"):
            node = node_for(upcoming)
            cluster.create_if_absent(node)
            names.add(node["metadata"]["name"])
    return names


def wait_until_bound(cluster: Cluster, namespace: str, pods: list[str]) -> dict[str, str]:
    """Join machines as their UpcomingNodes turn Ready, until every pod is bound to one;
    returns pod -> node."""

    def bound() -> dict[str, str] | None:
        joined = join_ready_machines(cluster)
        placed = {
            p["metadata"]["name"]: p["spec"].get("nodeName")
            for p in cluster.items("pods", namespace, "app=e2e-demand")
        }
        if sorted(placed) != sorted(pods) or not all(placed.values()):
            return None
        assert set(placed.values()) <= joined, f"pods on nodes no machine announced: {placed}"
        return {pod: str(node) for pod, node in placed.items()}

    return wait_until(bound, "every pod bound to a joined machine", timeout_s=600)


def shard_status(management: Cluster) -> dict[str, Any]:
    status: dict[str, Any] = management.get("shards", SHARD_ID).get("status") or {}
    return status


def test_unschedulable_pods_are_bound_to_machines_of_the_management_clusters_shard(
    management: Cluster, managed_a: Cluster
) -> None:
    namespace = fresh_namespace(managed_a)
    pods = launch(managed_a, namespace, count=4, cpu="3")  # 12 CPU: two 8-CPU machines
    wait_for_requests(managed_a, namespace, pods)

    placement = wait_until_bound(managed_a, namespace, pods)

    machines = set(placement.values())
    assert len(machines) >= 2
    for name in machines:
        node = managed_a.get("nodes", name)
        assert node["metadata"]["labels"][INSTANCE_TYPE_LABEL] == "m6i.2xlarge"
        assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"
    assert "e2e-a" in shard_status(management).get("connectedClusters", [])


def test_a_shard_outage_loses_no_pod_request_or_machine(
    management: Cluster, managed_a: Cluster
) -> None:
    namespace = fresh_namespace(managed_a)
    pods = launch(managed_a, namespace, count=2, cpu="3")
    requests = wait_for_requests(managed_a, namespace, pods)
    placement = wait_until_bound(managed_a, namespace, pods)
    epoch = int(shard_status(management)["epoch"])

    def unchanged() -> None:
        now = {p["metadata"]["name"]: p for p in managed_a.items("pods", namespace)}
        assert {name: p["spec"].get("nodeName") for name, p in now.items()} == placement
        assert all(p["status"].get("phase") != "Failed" for p in now.values())
        assert (
            sorted(r["metadata"]["name"] for r in requests_by_pod(managed_a, namespace).values())
            == requests
        )
        for node in set(placement.values()):
            assert phase(managed_a.get("upcomingnodes", f"un-{node}")) == "Ready"

    scale = ("-n", NAMESPACE, "scale", f"statefulset/{SHARD_STATEFULSET}")
    management.kubectl(*scale, "--replicas=0")
    try:
        wait_until(
            lambda: (
                not management.items(
                    "pods", NAMESPACE, f"statefulset.kubernetes.io/pod-name={SHARD_STATEFULSET}-0"
                )
            ),
            "the shard pod gone",
        )
        unchanged()  # with the shard down, the cluster keeps everything it has
    finally:
        management.kubectl(*scale, "--replicas=1")

    def back() -> bool:
        status = shard_status(management)
        return (
            int(status.get("epoch", 0)) > epoch
            and "e2e-a" in status.get("connectedClusters", [])
            and int(status.get("cycle", 0)) >= 3
        )

    wait_until(back, "the restarted shard (new epoch) serving e2e-a for a few cycles")
    unchanged()  # and the restarted shard reclaims nothing it rebuilt from the provider
    assert all(phase(cr) == "Acknowledged" for cr in requests_by_pod(managed_a, namespace).values())


def test_two_managed_clusters_are_served_by_one_shard_without_sharing_machines(
    management: Cluster, managed_a: Cluster, managed_b: Cluster
) -> None:
    placements = {}
    for cluster in (managed_a, managed_b):
        namespace = fresh_namespace(cluster)
        pods = launch(cluster, namespace, count=2, cpu="3")
        wait_for_requests(cluster, namespace, pods)
        placements[cluster.name] = set(wait_until_bound(cluster, namespace, pods).values())

    assert not placements[managed_a.name] & placements[managed_b.name]
    upcoming_a = {u["metadata"]["name"] for u in managed_a.items("upcomingnodes")}
    upcoming_b = {u["metadata"]["name"] for u in managed_b.items("upcomingnodes")}
    assert not upcoming_a & upcoming_b  # each machine is announced in its own cluster only
    connected = set(shard_status(management).get("connectedClusters", []))
    assert {"e2e-a", "e2e-b"} <= connected
