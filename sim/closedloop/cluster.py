"""One simulated cluster: workload objects owning Pods, their roll-up, and a small scheduler.

Each Pod carries one CapacityRequest, derived from the Pod the way the pod
controller derives it, and the roll-up is the operator's own (`rollup.build`,
with its memo: an unchanged request is translated once). The scheduler binds
pending Pods onto the cluster's Configured machines (validation.md §2.1, step 8)
and Pods are evicted when their machine stops being Configured for the cluster
(step 7).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bigfleet import quantity
from bigfleet.operators.operator import rollup
from bigfleet.operators.podcontroller import derive
from bigfleet.shard.engine.machine import Machine
from bigfleet.sim.closedloop.spec import DOMAIN_KEYS, Shape, WorkloadSpec
from bigfleet.wire import capacity_pb2

INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
OBJECT_LABEL = "bigfleet.sim/object"
NAMESPACE = "default"


@dataclass(slots=True)
class Pod:
    name: str
    seq: int  # creation order: the newest Pod has the highest
    obj: WorkloadObject
    request: dict[str, int]  # milli-units
    cr: dict[str, Any]  # its CapacityRequest, one object for the Pod's whole life
    machine: str = ""  # bound to; empty while pending


@dataclass(slots=True, eq=False)
class WorkloadObject:
    """A Deployment-like object: `replicas` Pods of one shape; with a gang shape, one
    co-location group whose members must share a rack or zone."""

    workload: str
    index: int
    shape_name: str
    shape: Shape
    replicas: int
    managed: bool
    pods: list[Pod] = field(default_factory=list)
    anchor: str = ""  # the gang's domain: that of its first bound member

    @property
    def key(self) -> str:
        return f"{self.workload}-{self.index}"

    @property
    def same_key(self) -> str | None:
        return DOMAIN_KEYS[self.shape.same] if self.shape.same else None


def _pod_object(obj: WorkloadObject, name: str) -> dict[str, Any]:
    """The Pod as the API server would hold it, as far as deriving its request reads it."""
    shape = obj.shape
    selector = {INSTANCE_TYPE_KEY: shape.instance_type}
    if shape.zone:
        selector["topology.kubernetes.io/zone"] = shape.zone
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "resources": {"requests": dict(shape.request)}}],
        "nodeSelector": selector,
        "priority": shape.priority,
    }
    if obj.same_key:
        spec["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "topologyKey": obj.same_key,
                        "labelSelector": {"matchLabels": {OBJECT_LABEL: obj.key}},
                    }
                ]
            }
        }
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {OBJECT_LABEL: obj.key},
            "annotations": {
                derive.INTERRUPTION_ANNOTATION: repr(shape.interruption_penalty),
                derive.RECLAMATION_ANNOTATION: repr(shape.reclamation_penalty),
            },
        },
        "spec": spec,
    }


def _free_slots(free: Mapping[str, int], request: Mapping[str, int]) -> int:
    return min((free.get(name, 0) // milli for name, milli in request.items() if milli), default=0)


class ClusterModel:
    def __init__(self, name: str, workloads: Iterable[WorkloadSpec], shapes: Mapping[str, Shape]):
        self.name = name
        self.shapes = shapes
        self.objects: list[WorkloadObject] = []
        self._seq = 0
        self._memo = rollup.Memo()
        self.evicted_total = 0
        for w in workloads:
            for i in range(w.objects):
                obj = WorkloadObject(w.name, i, w.shape, shapes[w.shape], w.replicas, w.managed)
                self.objects.append(obj)
                self._add_pods(obj, w.replicas)

    # -- Pods --------------------------------------------------------------------------------

    def _add_pods(self, obj: WorkloadObject, count: int) -> None:
        for _ in range(count):
            self._seq += 1
            name = f"{obj.key}-{self._seq}"
            pod = _pod_object(obj, name)
            spec = derive.capacity_request_spec(pod, {})
            cr = {
                "metadata": {"name": f"cr-{name}", "namespace": NAMESPACE},
                "spec": spec.to_object(),
                "status": {"phase": "Pending"},
            }
            request = {k: quantity.to_milli(v) for k, v in obj.shape.request.items()}
            obj.pods.append(Pod(name, self._seq, obj, request, cr))

    def pods(self) -> Iterable[Pod]:
        for obj in self.objects:
            yield from obj.pods

    def rescale(self, workload: str, replicas: int) -> None:
        """Every object of the workload to `replicas` Pods: scale-down removes pending Pods
        first, then the newest bound ones."""
        for obj in self.objects:
            if obj.workload != workload:
                continue
            obj.replicas = replicas
            excess = len(obj.pods) - replicas
            if excess < 0:
                self._add_pods(obj, -excess)
            elif excess > 0:
                order = sorted(obj.pods, key=lambda p: (p.machine != "", -p.seq))
                gone = {id(p) for p in order[:excess]}
                obj.pods = [p for p in obj.pods if id(p) not in gone]

    # -- the roll-up (step 4) ----------------------------------------------------------------

    def rollup(self, now_ns: int, cr_per_pod: bool = True) -> capacity_pb2.ClusterCapacityNeeds:
        """The operator's roll-up over one CapacityRequest per live Pod (or, the canary, per
        pending Pod only)."""
        crs = [p.cr for p in self.pods() if cr_per_pod or not p.machine]
        return rollup.build(self.name, crs, now_ns, self._memo).message

    # -- evictions (step 7) ------------------------------------------------------------------

    def evict(self, configured: Mapping[str, Machine]) -> int:
        """Evict Pods whose machine is no longer Configured for this cluster; controllers
        recreate theirs pending, bare Pods are gone. Gangs with nothing bound lose their
        anchor. Returns the Pods evicted."""
        evicted = 0
        for obj in self.objects:
            lost = [p for p in obj.pods if p.machine and p.machine not in configured]
            if lost:
                evicted += len(lost)
                obj.pods = [p for p in obj.pods if not (p.machine and p.machine not in configured)]
                if obj.managed:
                    self._add_pods(obj, len(lost))
            if obj.anchor and not any(p.machine for p in obj.pods):
                obj.anchor = ""
        self.evicted_total += evicted
        return evicted

    # -- the scheduler (step 8) --------------------------------------------------------------

    def bind(self, configured: Mapping[str, Machine]) -> None:
        """Bind pending Pods: gangs first, then affinity-constrained Pods, then the rest; each
        onto the matching machine with the most free Pod slots (ties: lowest id). A gang stays
        in the domain of its first bound member; members that do not fit there stay pending."""
        free: dict[str, dict[str, int]] = {
            m.id: dict(m.allocatable or m.resources) for m in configured.values()
        }
        for pod in self.pods():
            if pod.machine:
                room = free[pod.machine]
                for name, milli in pod.request.items():
                    room[name] = room.get(name, 0) - milli
        by_type: dict[str, list[Machine]] = {}
        for m in sorted(configured.values(), key=lambda m: m.id):
            by_type.setdefault(m.instance_type, []).append(m)

        def rank(obj: WorkloadObject) -> tuple[int, int, str, int]:
            klass = 0 if obj.same_key else 1 if obj.shape.zone else 2
            return (klass, -obj.shape.priority, obj.workload, obj.index)

        for obj in sorted(self.objects, key=rank):
            pending = [p for p in obj.pods if not p.machine]
            if not pending:
                continue
            candidates = [
                m
                for m in by_type.get(obj.shape.instance_type, [])
                if not obj.shape.zone or m.zone == obj.shape.zone
            ]
            for pod in pending:
                best: Machine | None = None
                best_slots = 0
                for m in candidates:
                    if obj.same_key and obj.anchor and m.attribute(obj.same_key) != obj.anchor:
                        continue
                    slots = _free_slots(free[m.id], pod.request)
                    if slots > best_slots:  # strictly more: ties keep the lower id
                        best, best_slots = m, slots
                if best is None:
                    break  # the Pods of an object are alike: none after this one fits either
                pod.machine = best.id
                room = free[best.id]
                for name, milli in pod.request.items():
                    room[name] -= milli
                if obj.same_key and not obj.anchor:
                    obj.anchor = best.attribute(obj.same_key) or ""

    # -- what counters read ------------------------------------------------------------------

    def target(self) -> int:
        return sum(obj.replicas for obj in self.objects)

    def demand_machines(self) -> int:
        """Machines the live Pods ask for, packed as tightly as they may be: per shape, plain
        Pods in whole machines; gangs smaller than a machine as many whole gangs to a
        machine as fit; larger gangs in whole machines each."""
        plain: dict[str, int] = {}
        small: dict[tuple[str, int], int] = {}  # (shape, gang size) -> gangs
        total = 0
        for obj in self.objects:
            size, density = len(obj.pods), obj.shape.density
            if not obj.same_key:
                plain[obj.shape_name] = plain.get(obj.shape_name, 0) + size
            elif 0 < size < density:
                small[(obj.shape_name, size)] = small.get((obj.shape_name, size), 0) + 1
            else:
                total += math.ceil(size / density)
        for name, count in plain.items():
            total += math.ceil(count / self.shapes[name].density)
        for (name, size), gangs in small.items():
            total += math.ceil(gangs / (self.shapes[name].density // size))
        return total

    def scattered(self, machines: Mapping[str, Machine]) -> int:
        """Gangs whose bound members sit in more than one domain."""
        count = 0
        for obj in self.objects:
            if obj.same_key:
                domains = {
                    machines[p.machine].attribute(obj.same_key)
                    for p in obj.pods
                    if p.machine in machines
                }
                count += len(domains) > 1
        return count
