"""Replaying last cycle's credit pass where nothing it read has changed.

Phase 1's credit pass is most of a cycle's work at fleet scale, and between
two cycles little of it changes. A need's credit step reads only:

- the need itself (profile, amounts, group, parking; not its arrival time),
- its cluster's bound machines of its pinned instance types (all types when
  unpinned) and what earlier needs of the cluster claimed among them,
- the in-flight Creating machines carrying its attribution,
- for a Same need that may acquire: the acquirable machines of its types,
  minus what earlier Same needs reserved among them this cycle.

So a step is replayed when the need is unchanged, the inventory stamps of
those machines are unchanged, every earlier step of the cluster on any of its
types was replayed in the same order or recomputed to the same credits, and
(Same) the reservations made so far this cycle among the machines it weighs
look as they did last cycle; a step that reserved machines itself also needs
the ones it took to be free and the ones it passed over to be taken still.
A co-location step that credit covered and whose only change is in
acquirable supply, or in its cluster's claims outside its domain, is ranked
again rather than seeded again (against the domains that could still
outrank it): if it would choose the same domain, it is replayed; so is a
step that reserved and would choose the same domain against today's
reservations (ADR 0025) and today's acquirable supply, as long as no
acquirable machine of its own domain moved (ADR 0028). Needs of disjoint instance types
touch disjoint machines, which is what lets the rest of a cluster replay
when one need changes. A replayed cycle decides exactly what a fresh one
would; the engine's property tests compare the two after random changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from bigfleet.shard.engine.decision.colocation import Bucket
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.engine.resources import Vector, is_zero

# Keys that travel between containers are typed as any tuple: compiled code keeps such a
# tuple as the object it is, where a fixed-length type would unpack it and build a new
# one each time it is stored, hashed as a key or put in another tuple.
PoolKey = tuple[Any, ...]  # (state, pinned types, interruption bucket)
GroupingKey = tuple[Any, ...]  # (pool key, Same topology key): a pool grouped by one key
NeedKey = tuple[object, ...]
# Per Same domain value, the acquirable machines a need could take there: (count, total).
PerValue = dict[str, tuple[int, dict[str, int]]]
AcquirableTotals = tuple[PerValue, ...]  # one per grouping a need weighs
# An inventory stamp: compared for equality, never looked into. Any, not object: mypyc
# resolves a compiled dataclass's string annotations by name, and `object` is no global.
Stamp = Any


def need_key(need: Need) -> NeedKey:
    """Everything of a need its credit step depends on; equal keys credit alike."""
    return (
        need.profile.fingerprint,
        need.group,
        need.parked,
        tuple(need.aggregate.items()),
        tuple(need.min_unit.items()),
        need.whole_units,
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """An acquirable machine a Same need's seeding set aside for its chosen domain."""

    pool: PoolKey
    key: str  # the Same topology key
    value: str
    group: int  # position of the machine's group among the value's groups
    machine_id: str


class Step:
    """What one need's credit pass did, and the stamps of what it read.

    Never changed once made. A plain class with final attributes rather than a
    frozen dataclass: compiled code then builds it natively (about 30 ns, where the
    dataclass's generated `__init__` ran as Python at about 1 µs), and a supply
    change makes one per covered gang.
    """

    def __init__(
        self,
        need: NeedKey,
        source: Need,
        types: tuple[str, ...],
        stamp: Stamp,
        acquirable: Stamp,
        credited: tuple[str, ...],
        remaining: Vector,
        domain: str | None,
        satisfiable: bool | None,
        reservations: tuple[Reservation, ...],
        seen: Seen,
        skipped: tuple[str, ...],
        credit_side: dict[str, Bucket] | None,
        ranked: Ranking | None,
        configured: int,
        totals_key: tuple[Any, ...] | None,
        short: bool | None = None,
        saw_reservations: bool | None = None,
    ) -> None:
        self.need: Final = need
        self.source: Final = source  # the need object it was taken for: the same needs no key
        self.types: Final = types  # the need's pinned instance types; empty: any
        self.stamp: Final = stamp  # its cluster's bound machines of its types, its in-flight
        self.acquirable: Final = acquirable  # the acquirable machines a co-location need weighs
        self.credited: Final = credited
        self.remaining: Final = remaining
        self.domain: Final = domain
        self.satisfiable: Final = satisfiable
        self.reservations: Final = reservations
        self.seen: Final = seen  # the reservations it found made before it
        # Machines it passed over, already taken, while reserving: with its own
        # reservations, what its reserving read of other needs' reservations.
        self.skipped: Final = skipped
        self.credit_side: Final = credit_side  # co-location: what it could credit, per value
        self.ranked: Final = ranked  # co-location covered by credit: how its domain last won
        self.configured: Final = configured  # how many of `credited` are Configured (Phase 3)
        # Co-location: what its acquirable totals are shared by (see phase1._totals_key).
        self.totals_key: Final = totals_key
        # Still short after crediting: it reserved. (Given when replayed: the same.)
        self.short: Final = not is_zero(remaining) if short is None else short
        # `seen` holds some reservations: read once per cycle, or given with the same `seen`.
        self.saw_reservations: Final = (
            any(view for _, view in seen) if saw_reservations is None else saw_reservations
        )

    def again(
        self,
        source: Need,
        acquirable: Stamp,
        seen: Seen,
        ranked: Ranking | None,
        credit_side: dict[str, Bucket] | None,
    ) -> Step:
        """This step replayed for `source`, with what it read of supply now."""
        return Step(
            self.need,
            source,
            self.types,
            self.stamp,
            acquirable,
            self.credited,
            self.remaining,
            self.domain,
            self.satisfiable,
            self.reservations,
            seen,
            self.skipped,
            credit_side,
            ranked,
            self.configured,
            self.totals_key,
            self.short,
            self.saw_reservations if seen is self.seen else None,
        )


class Ranking:
    """How a covered co-location step's domain last won: the acquirable totals per domain
    value it was ranked against, the rank it won with, and the values whose credit could
    still let them win (`colocation.credit_contenders`). Never changed once made."""

    def __init__(
        self, against: AcquirableTotals, rank: tuple[object, ...], contenders: tuple[str, ...]
    ) -> None:
        self.against: Final = against
        self.rank: Final = rank
        self.contenders: Final = contenders


# What a Same step found reserved before it: per grouping it weighed, the reserved
# count per machine group (what its choice of domain reads).
Seen = tuple[tuple[GroupingKey, frozenset[tuple[tuple[str, int], int]]], ...]


class ReservationLog:
    """This cycle's reservations, counted per grouping and machine group."""

    def __init__(self) -> None:
        self._counts: dict[GroupingKey, dict[tuple[str, int], int]] = {}
        self._views: dict[GroupingKey, frozenset[tuple[tuple[str, int], int]]] = {}
        self.made = 0  # reservations so far: what was read before them stands while it holds

    def add(self, r: Reservation) -> None:
        self.made += 1
        counts = self._counts.setdefault((r.pool, r.key), {})
        counts[(r.value, r.group)] = counts.get((r.value, r.group), 0) + 1
        self._views.pop((r.pool, r.key), None)

    def view(self, grouping: GroupingKey) -> frozenset[tuple[tuple[str, int], int]]:
        """The grouping's reserved counts per machine group, so far this cycle."""
        view = self._views.get(grouping)
        if view is None:
            view = self._views[grouping] = frozenset(self._counts.get(grouping, {}).items())
        return view

    def seen(self, groupings: tuple[GroupingKey, ...]) -> Seen:
        return tuple((g, self.view(g)) for g in groupings)

    def as_seen(self, step: Step) -> bool:
        """Reservations so far look to the step, choosing its domain, as they did."""
        if not step.seen:
            return True  # it weighed no acquirable machines
        if not self._counts:  # nothing reserved yet this cycle
            return not step.saw_reservations
        # A loop, not `all` over a generator, which compiled code builds as an object.
        for grouping, view in step.seen:  # noqa: SIM110
            if self.view(grouping) != view:
                return False
        return True


class ClusterSteps:
    """One cluster's steps of a cycle, in credit order, findable by need."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self._positions: dict[NeedKey, list[int]] | None = None  # built on first search

    def find(self, key: NeedKey, start: int) -> int | None:
        """The first step of this need at or after `start`."""
        if self._positions is None:
            self._positions = {}
            for i, step in enumerate(self.steps):  # a roll-up may repeat a need
                self._positions.setdefault(step.need, []).append(i)
        return next((i for i in self._positions.get(key, ()) if i >= start), None)


class Lane:
    """One cluster's walk through its previous steps during this cycle's credit pass.

    Tracks which instance types may now hold different claims than last cycle
    (recomputed, new, removed or reordered needs on them), so that later needs
    on those types are computed rather than replayed.
    """

    def __init__(self, previous: ClusterSteps | None) -> None:
        self._previous = previous
        self.steps: list[Step] = []  # this cycle's, in credit order
        self._next = 0
        self._changed: set[str] | None = set() if previous is not None else None
        # Machines whose claim by this cluster's needs so far may differ from last cycle's
        # at the same point, in the order found (repeats allowed): a co-location need's
        # kept credit side differs only where they lie.
        self.moved: list[str] = []

    def match(self, need: Need) -> Step | None:
        """Last cycle's step of this need, if it comes after the ones matched so far."""
        previous = self._previous
        if previous is None:
            return None
        at = self._next
        if not (at < len(previous.steps) and previous.steps[at].source is need):
            found = previous.find(need_key(need), at)
            if found is None:
                return None
            for skipped in previous.steps[at:found]:  # gone or moved: their claims differ
                self.changed(skipped.types)
                self.moved.extend(skipped.credited)
            at = found
        self._next = at + 1
        return previous.steps[at]

    def take_in_place(self, need: Need) -> Step | None:
        """The next previous step when it held this need's place (same profile and group,
        other amounts): the need changed in place rather than arrived."""
        previous = self._previous
        if previous is None or self._next >= len(previous.steps):
            return None
        step = previous.steps[self._next]
        if step.need[:2] != (need.profile.fingerprint, need.group):
            return None
        self._next += 1
        return step

    def untouched(self, types: tuple[str, ...]) -> bool:
        """No earlier claim on these types (any type when empty) differs from last cycle."""
        changed = self._changed
        if changed is None:
            return False
        return changed.isdisjoint(types) if types else not changed

    def recomputed(
        self, before: Step | None, types: tuple[str, ...], credited: Sequence[str]
    ) -> None:
        """A need was computed rather than replayed, in the place of `before` (last
        cycle's step there, if any): later needs see other claims where they differ."""
        if before is None:
            self.changed(types)
            self.moved.extend(credited)
            return
        differ = set(before.credited).symmetric_difference(credited)
        if differ:
            self.changed(types)
            self.moved.extend(differ)

    def claims_as_before(self) -> bool:
        """At the end of the pass: the cluster's needs claimed the very machines they
        claimed last cycle (every step matched one with equal claims, and last cycle's
        steps left over claimed nothing)."""
        previous = self._previous
        if previous is None or self.moved:
            return False
        return not any(step.credited for step in previous.steps[self._next :])

    def changed(self, types: tuple[str, ...]) -> None:
        if self._changed is None:
            return
        if types:
            self._changed.update(types)
        else:
            self._changed = None
