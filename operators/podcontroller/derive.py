"""A Pod's CapacityRequest spec, the way the scheduler sees the pod (components.md §2.3).

Requirements: the first required node-affinity term (terms are ORed and a
request cannot say OR) plus every nodeSelector entry; neither means "any
instance type". Resources follow the scheduler's arithmetic: the larger of
the app containers plus restartable init sidecars, and the largest init
step, plus the pod overhead. Penalties: the pod's annotations, else its
PriorityClass's defaults, else conservative non-zero defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bigfleet import quantity
from bigfleet.crd.models import (
    CapacityRequestSpec,
    CoLocation,
    LabelSelector,
    NodeSelectorRequirement,
    TopologySpread,
)
from bigfleet.requirements import NODE_SELECTOR_OPERATORS, Operator

INTERRUPTION_ANNOTATION = "bigfleet.lucy.sh/interruption-penalty"
RECLAMATION_ANNOTATION = "bigfleet.lucy.sh/reclamation-penalty"
OWNER_LABEL = "bigfleet.lucy.sh/owned-by-pod"
# Without any hint, price an interruption high (keep such pods off risky capacity)
# and the machines' own value low.
DEFAULT_PENALTIES = {"interruptionPenalty": "100", "reclamationPenalty": "10"}


@dataclass(frozen=True)
class Penalties:
    interruption: str
    reclamation: str


def _valid(text: Any) -> str | None:
    if text is None:
        return None
    try:
        value = quantity.parse(str(text))
    except quantity.InvalidQuantity:
        return None
    return str(text) if value >= 0 else None


def penalties(pod: Mapping[str, Any], defaults: Mapping[str, Mapping[str, str]]) -> Penalties:
    annotations = pod["metadata"].get("annotations") or {}
    by_class = defaults.get(pod["spec"].get("priorityClassName") or "", {})
    return Penalties(
        interruption=_valid(annotations.get(INTERRUPTION_ANNOTATION))
        or by_class.get("interruptionPenalty")
        or DEFAULT_PENALTIES["interruptionPenalty"],
        reclamation=_valid(annotations.get(RECLAMATION_ANNOTATION))
        or by_class.get("reclamationPenalty")
        or DEFAULT_PENALTIES["reclamationPenalty"],
    )


def _requests(container: Mapping[str, Any]) -> dict[str, int]:
    requests = (container.get("resources") or {}).get("requests") or {}
    return {name: quantity.to_milli(value) for name, value in requests.items()}


def _add(a: dict[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def _max(a: dict[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}


def resources(spec: Mapping[str, Any]) -> dict[str, str]:
    running: dict[str, int] = {}
    for container in spec.get("containers") or []:
        running = _add(running, _requests(container))
    init_peak: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    for container in spec.get("initContainers") or []:
        requests = _requests(container)
        # An init step runs beside the sidecars started before it.
        init_peak = _max(init_peak, _add(sidecars, requests))
        if container.get("restartPolicy") == "Always":
            sidecars = _add(sidecars, requests)
    total = _max(_add(running, sidecars), init_peak)
    overhead = {k: quantity.to_milli(v) for k, v in (spec.get("overhead") or {}).items()}
    total = _add(total, overhead)
    return {name: quantity.from_milli(milli) for name, milli in sorted(total.items()) if milli > 0}


def requirements(spec: Mapping[str, Any]) -> tuple[NodeSelectorRequirement, ...]:
    out: list[NodeSelectorRequirement] = []
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = affinity.get("nodeSelectorTerms") or []
    if terms:
        for expression in terms[0].get("matchExpressions") or []:
            if expression["operator"] in NODE_SELECTOR_OPERATORS:  # Gt and Lt have no equal
                out.append(
                    NodeSelectorRequirement(
                        key=expression["key"],
                        operator=expression["operator"],
                        values=tuple(sorted(expression.get("values") or ())) or None,
                    )
                )
    for key, value in sorted((spec.get("nodeSelector") or {}).items()):
        out.append(NodeSelectorRequirement(key=key, operator=Operator.IN, values=(value,)))
    return tuple(out) or (
        NodeSelectorRequirement(key="node.kubernetes.io/instance-type", operator=Operator.EXISTS),
    )


def _spread(spec: Mapping[str, Any]) -> tuple[TopologySpread, ...] | None:
    """The pod's hard spread constraints; ScheduleAnyway is only a preference."""
    spread = tuple(
        TopologySpread(
            topology_key=c["topologyKey"],
            max_skew=int(c["maxSkew"]),
            when_unsatisfiable=c["whenUnsatisfiable"],
        )
        for c in spec.get("topologySpreadConstraints") or []
        if c.get("whenUnsatisfiable") == "DoNotSchedule"
    )
    return spread or None


def _co_location(spec: Mapping[str, Any]) -> CoLocation | None:
    """The first required pod-affinity term: where the pod must sit beside others."""
    affinity = ((spec.get("affinity") or {}).get("podAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    if not affinity:
        return None
    term = affinity[0]
    selector = term.get("labelSelector")
    return CoLocation(
        topology_key=term["topologyKey"],
        label_selector=LabelSelector.from_object(selector) if selector else None,
    )


def capacity_request_spec(
    pod: Mapping[str, Any], defaults: Mapping[str, Mapping[str, str]]
) -> CapacityRequestSpec:
    spec = pod["spec"]
    cost = penalties(pod, defaults)
    return CapacityRequestSpec(
        requirements=requirements(spec),
        resources=resources(spec) or {"cpu": "1m"},  # a pod always occupies something
        priority=int(spec.get("priority") or 0),
        interruption_penalty=cost.interruption,
        reclamation_penalty=cost.reclamation,
        topology_spread=_spread(spec),
        co_location=_co_location(spec),
    )


def unschedulable(pod: Mapping[str, Any]) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled":
            return bool(
                condition.get("status") == "False" and condition.get("reason") == "Unschedulable"
            )
    return False


def terminal(pod: Mapping[str, Any]) -> bool:
    """The pod needs no capacity from now on: it ended, or it is being deleted.

    A deleted pod of a Deployment or Job is replaced at once, while it may take its
    grace period to go. Its request going at once keeps demand at the workload's size;
    kept until the pod is gone, the replacement's request would count twice meanwhile
    and could buy a machine that is given back a moment later.
    """
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return True
    phase: str = (pod.get("status") or {}).get("phase") or ""
    return phase in ("Succeeded", "Failed")


def request_name(pod_name: str, uid: str) -> str:
    """`cr-pod-<pod>-<first 8 of the UID>`, within the 63 characters a name may have."""
    stem = pod_name[:46].rstrip(".-")
    return f"cr-pod-{stem}-{uid.replace('-', '')[:8]}".lower()
