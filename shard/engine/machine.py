"""Machine: one unit of capacity in every state from quota slot to joined node.

A Machine is an immutable record; a change is a new record through
`transition` (legal edges only) or `dataclasses.replace` for field updates.
`check` enforces the per-state invariants that every inventory write and
every provider record must satisfy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

# The lifecycle is the kernel's, shared with providers; re-exported for the engine's callers.
from bigfleet.lifecycle import LEGAL_TRANSITIONS as LEGAL_TRANSITIONS
from bigfleet.lifecycle import STABLE as STABLE
from bigfleet.lifecycle import MachineState as MachineState
from bigfleet.shard.engine.resources import Vector

INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
ZONE_KEY = "topology.kubernetes.io/zone"


class CapacityType(IntEnum):
    """Numbers equal the wire enum CapacityType."""

    UNSPECIFIED = 0
    BARE_METAL = 1
    RESERVED = 2
    ON_DEMAND = 3
    SPOT = 4


S = MachineState
_NO_HOST = frozenset({S.SPECULATIVE, S.CREATING})
_BOUND = frozenset({S.CONFIGURED, S.DRAINING})


# Interned shapes: canonical maps and signatures shared by every machine alike in
# them. Values are immutable by convention (engine records never mutate their
# maps) and few, so the table stays small; it changes no result, only memory.
_SHAPES: dict[object, Any] = {}


def _key(kind: str, mapping: Mapping[str, Any]) -> tuple[object, ...]:
    key = (kind, tuple(sorted(mapping.items())))
    return _SHAPES.setdefault(key, key)  # type: ignore[no-any-return]


def _shared(kind: str, mapping: Mapping[str, Any]) -> Any:
    key = _key(kind, mapping)
    shared = _SHAPES.get(("map", key))
    if shared is None:
        shared = _SHAPES[("map", key)] = dict(mapping)
    return shared


class InvalidMachine(ValueError):
    """A record that breaks a machine invariant; `reason` is a metric label."""

    def __init__(self, machine_id: str, reason: str, detail: str) -> None:
        super().__init__(f"machine {machine_id}: {detail}")
        self.reason = reason


class IllegalTransition(ValueError):
    """A state change the lifecycle does not allow."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    id: str
    state: MachineState
    host: str = ""  # "<provider>/<ref>"; empty while SPECULATIVE or CREATING
    cluster: str = ""
    instance_type: str = ""
    zone: str = ""
    capacity_type: CapacityType = CapacityType.UNSPECIFIED
    resources: Vector = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    allocatable: Vector = field(default_factory=dict)
    price_per_hour: float = 0.0
    interruption_probability: float = 0.0
    last_error: str = ""
    assigned_priority: int = 0
    assigned_interruption_penalty: float = 0.0
    assigned_reclamation_penalty: float = 0.0
    assigned_need_fingerprint: str = ""
    assigned_group: str = ""
    # Everything selectors and unit checks read; machines alike in it match alike,
    # which lets profiles cache match results per signature instead of per machine.
    signature: tuple[object, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Machines come in few shapes; sharing one copy of each shape's maps and
        # signature keeps a machine well under a kilobyte at 500,000 machines.
        labels = _shared("labels", self.labels)
        resources = _shared("resources", self.resources)
        allocatable = _shared("allocatable", self.allocatable)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "resources", resources)
        object.__setattr__(self, "allocatable", allocatable)
        alloc = allocatable or resources
        signature = (self.instance_type, self.zone, _key("labels", labels), _key("alloc", alloc))
        object.__setattr__(self, "signature", _SHAPES.setdefault(signature, signature))

    @property
    def alloc(self) -> Vector:
        """Effective allocatable: what supply math counts."""
        return self.allocatable or self.resources

    def attribute(self, key: str) -> str | None:
        """The value a selector key reads on this machine, None when absent."""
        if key == INSTANCE_TYPE_KEY and self.instance_type:
            return self.instance_type
        if key == ZONE_KEY and self.zone:
            return self.zone
        return self.labels.get(key)


def check(machine: Machine) -> None:
    """Raise InvalidMachine unless the record satisfies its state's invariants."""
    m = machine
    if m.state == S.UNSPECIFIED:
        raise InvalidMachine(m.id, "structural", "state is unspecified")
    if math.isnan(m.price_per_hour) or m.price_per_hour < 0:
        raise InvalidMachine(m.id, "price", f"price {m.price_per_hour} is not >= 0")
    p = m.interruption_probability
    if math.isnan(p) or not 0 <= p <= 1:
        raise InvalidMachine(m.id, "interruption_probability", f"probability {p} not in [0, 1]")
    if m.state == S.FAILED:
        if not m.last_error:
            raise InvalidMachine(m.id, "structural", "failed without last_error")
        return
    if m.state in _NO_HOST and (m.host or m.cluster):
        raise InvalidMachine(m.id, "structural", f"{m.state.title} with a host or cluster")
    if m.state not in _NO_HOST and not m.host:
        raise InvalidMachine(m.id, "structural", f"{m.state.title} without a host")
    if m.state in _BOUND and not m.cluster:
        raise InvalidMachine(m.id, "structural", f"{m.state.title} without a cluster")


def transition(machine: Machine, to: MachineState, **changes: Any) -> Machine:
    """The machine in state `to` with `changes` applied; only legal edges, invariants kept."""
    if to not in LEGAL_TRANSITIONS[machine.state]:
        raise IllegalTransition(f"machine {machine.id}: {machine.state.title} -> {to.title}")
    moved = replace(machine, state=to, **changes)
    check(moved)
    return moved


def labels_with_topology(m: Machine) -> dict[str, str]:
    """The machine's labels plus the well-known instance-type and zone ones it records:
    what its Node will carry, and what a topology domain matches."""
    labels = dict(m.labels)
    if m.instance_type:
        labels.setdefault(INSTANCE_TYPE_KEY, m.instance_type)
    if m.zone:
        labels.setdefault(ZONE_KEY, m.zone)
    return labels
