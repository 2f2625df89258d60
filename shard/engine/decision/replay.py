"""Replaying last cycle's credit pass where nothing it read has changed.

Phase 1's credit pass is most of a cycle's work at fleet scale, and between
two cycles little of it changes. A need's credit step reads only:

- the need itself (profile, amounts, group, parking; not its arrival time),
- its cluster's bound machines of its pinned instance types (all types when
  unpinned) and what earlier needs of the cluster claimed among them,
- the in-flight Creating machines carrying its attribution,
- for a Same need that may acquire: the acquirable machines of its types,
  minus what earlier Same needs reserved this cycle.

So a step is replayed when the need is unchanged, the inventory stamps of
those machines are unchanged, every earlier step of the cluster on any of its
types was itself replayed in the same order, and (Same) the reservations made
so far this cycle equal last cycle's. Needs of disjoint instance types touch
disjoint machines, which is what lets the rest of a cluster replay when one
need changes. A replayed cycle decides exactly what a fresh one would; the
engine's property tests compare the two after random changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from shard.engine.machine import MachineState
from shard.engine.needs import Need

PoolKey = tuple[MachineState, tuple[str, ...], int]  # (state, pinned types, interruption bucket)
NeedKey = tuple[object, ...]


def need_key(need: Need) -> NeedKey:
    """Everything of a need its credit step depends on; equal keys credit alike."""
    return (
        need.profile.fingerprint,
        need.group,
        need.parked,
        tuple(need.aggregate.items()),
        tuple(need.min_unit.items()),
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """An acquirable machine a Same need's seeding set aside for its chosen domain."""

    pool: PoolKey
    key: str  # the Same topology key
    value: str
    group: int  # position of the machine's group among the value's groups
    machine_id: str


@dataclass(frozen=True, slots=True)
class Step:
    """What one need's credit pass did, and the stamps of what it read."""

    need: NeedKey
    types: tuple[str, ...]  # the need's pinned instance types; empty: any
    stamp: object
    credited: tuple[str, ...]
    remaining: dict[str, int]
    domain: str | None
    satisfiable: bool | None
    reservations: tuple[Reservation, ...]
    reserved_before: int  # reservations made this cycle before this need's


class ClusterSteps:
    """One cluster's steps of a cycle, in credit order, findable by need."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.position = {step.need: i for i, step in enumerate(steps)}


class Lane:
    """One cluster's walk through its previous steps during this cycle's credit pass.

    Tracks which instance types may now hold different claims than last cycle
    (recomputed, new, removed or reordered needs on them), so that later needs
    on those types are computed rather than replayed.
    """

    def __init__(self, previous: ClusterSteps | None) -> None:
        self._previous = previous
        self._next = 0
        self._changed: set[str] | None = set() if previous is not None else None

    def match(self, key: NeedKey) -> Step | None:
        """Last cycle's step of this need, if it comes after the ones matched so far."""
        previous = self._previous
        if previous is None:
            return None
        at = previous.position.get(key)
        if at is None or at < self._next:
            return None
        for skipped in previous.steps[self._next : at]:  # gone or moved: their claims differ
            self.changed(skipped.types)
        self._next = at + 1
        return previous.steps[at]

    def untouched(self, types: tuple[str, ...]) -> bool:
        """No earlier claim on these types (any type when empty) differs from last cycle."""
        changed = self._changed
        if changed is None:
            return False
        return changed.isdisjoint(types) if types else not changed

    def changed(self, types: tuple[str, ...]) -> None:
        if self._changed is None:
            return
        if types:
            self._changed.update(types)
        else:
            self._changed = None
