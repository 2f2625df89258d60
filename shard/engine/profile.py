"""Profile: the constraint set that keys demand, and how a machine is matched against it.

A Profile holds requirements, topology spread, priority and both penalty
buckets; it carries no resource shape (demand is an aggregate vector). Profiles
are canonicalised on construction, so equal constraint sets have equal
fingerprints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The operator vocabulary is the kernel's (CRDs, wire, engine); re-exported for engine callers.
from bigfleet.requirements import Operator as Operator
from bigfleet.shard.engine.machine import INSTANCE_TYPE_KEY, Machine


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def passes(self, machine: Machine) -> bool:
        value = machine.attribute(self.key)
        match self.operator:
            case Operator.IN:
                return value is not None and value in self.values
            case Operator.NOT_IN:
                return value is None or value not in self.values
            case Operator.EXISTS:
                return value is not None
            case Operator.DOES_NOT_EXIST:
                return value is None
            case Operator.SAME:
                return value is not None and (not self.values or value in self.values)


@dataclass(frozen=True, slots=True)
class Spread:
    topology_key: str
    max_skew: int
    when_unsatisfiable: str  # "DoNotSchedule" or "ScheduleAnyway"

    @property
    def strict(self) -> bool:
        return self.when_unsatisfiable == "DoNotSchedule"


@dataclass(frozen=True, slots=True)
class Profile:
    requirements: tuple[Requirement, ...]
    spread: tuple[Spread, ...]
    priority: int
    interruption_bucket: int
    reclamation_bucket: int
    fingerprint: str = field(init=False, compare=False)
    same: Requirement | None = field(init=False, compare=False)
    pinned_types: tuple[str, ...] = field(init=False, compare=False)
    _matches: dict[tuple[object, ...], bool] = field(
        init=False, compare=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        requirements = tuple(
            sorted(
                (
                    Requirement(r.key, r.operator, tuple(sorted(r.values)))
                    for r in self.requirements
                ),
                key=lambda r: (r.key, r.operator.value, r.values),
            )
        )
        spread = tuple(sorted(self.spread, key=lambda s: (s.topology_key, s.max_skew)))
        object.__setattr__(self, "requirements", requirements)
        object.__setattr__(self, "spread", spread)
        reqs = ";".join(f"{r.key}{r.operator.value}{'|'.join(r.values)}" for r in requirements)
        spreads = ";".join(f"{s.topology_key}/{s.max_skew}/{s.when_unsatisfiable}" for s in spread)
        object.__setattr__(
            self,
            "fingerprint",
            f"p={self.priority}|i={self.interruption_bucket}|r={self.reclamation_bucket}"
            f"|req={reqs}|spr={spreads}",
        )
        same = [r for r in requirements if r.operator is Operator.SAME]
        object.__setattr__(self, "same", same[0] if same else None)
        # A single In on the instance type narrows candidate pools to that type's buckets.
        pinned: tuple[str, ...] = ()
        for r in requirements:
            if r.key == INSTANCE_TYPE_KEY and r.operator is Operator.IN:
                pinned = r.values
        object.__setattr__(self, "pinned_types", pinned)

    def matches(self, machine: Machine) -> bool:
        """Whether every requirement passes; cached per machine signature."""
        cached = self._matches.get(machine.signature)
        if cached is None:
            cached = all(r.passes(machine) for r in self.requirements)
            self._matches[machine.signature] = cached
        return cached

    @property
    def strict_spread(self) -> Spread | None:
        for s in self.spread:
            if s.strict:
                return s
        return None

    @property
    def precedence(self) -> tuple[int, int, int]:
        """Higher wins; equal precedence never displaces."""
        return (self.priority, self.interruption_bucket, self.reclamation_bucket)

    def without_same(self) -> Profile:
        return Profile(
            tuple(r for r in self.requirements if r.operator is not Operator.SAME),
            self.spread,
            self.priority,
            self.interruption_bucket,
            self.reclamation_bucket,
        )
