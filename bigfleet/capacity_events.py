"""The Events that tell a workload where its capacity stands, in one wording for every
component that writes them: the operator on a CapacityRequest, the pod controller on the
Pod the request was raised for.

The operator learns from its shard that a machine is coming; the pod controller learns it
from the operator's `NodeComing` Event on the request (components meet only through the
API server). That Event carries the machine and its rack as annotations, so the Pod's
Event is built from the same facts with the same words, and no one parses a sentence.
"""

from __future__ import annotations

from collections.abc import Mapping

WAITING_FOR_CAPACITY = "WaitingForCapacity"
NODE_COMING = "NodeComing"
OPERATOR = "bigfleet-operator"  # the operator's Events' source component
# On a NodeComing Event: which machine is coming, and in which rack ("" when unknown).
MACHINE_ANNOTATION = "bigfleet.lucy.sh/machine-id"
RACK_ANNOTATION = "bigfleet.lucy.sh/rack"
# Label keys a machine's rack is read from, first found wins.
RACK_LABELS = ("topology.kubernetes.io/rack", "rack")


def rack_of(labels: Mapping[str, str]) -> str:
    """The machine's rack from its labels; "" when none says."""
    return next((labels[key] for key in RACK_LABELS if labels.get(key)), "")


def node_coming(machine: str, rack: str, fits: str) -> str:
    """`machine m-7 in rack r1, which fits this request, is joining the cluster`."""
    where = f" in rack {rack}" if rack else ""
    return f"machine {machine}{where}, which fits {fits}, is joining the cluster"


def pod_waiting(request: str) -> str:
    """On the Pod, when its CapacityRequest is raised."""
    return (
        f"no node can take this pod now; CapacityRequest {request} asks BigFleet for a "
        "machine that fits it"
    )
