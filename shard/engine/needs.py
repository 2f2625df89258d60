"""Need and NeedsTable: the demand a shard serves, one full replacement per cluster.

A Need is one aggregated row: a Profile, the total resources wanted within it
and the largest indivisible unit. The table swaps a cluster's whole
contribution atomically and never merges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.machine import Machine
from bigfleet.shard.engine.profile import Profile
from bigfleet.shard.engine.resources import Vector

# Versions are unique across instances, so a cache keyed on one can never confuse two.
_VERSIONS = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    cluster: str
    profile: Profile
    aggregate: Vector
    min_unit: Vector = field(default_factory=dict)
    group: str = ""
    arrival: int = 0  # unix nanoseconds, earliest arrival of the folded requests
    parked: bool = False  # acquisition parking, shard-local
    # `min_unit` is one whole piece that cannot be split across machines (a folded gang):
    # a machine counts for the need only in whole units of it (see `credit`).
    whole_units: bool = False

    @property
    def fingerprint(self) -> str:
        return self.profile.fingerprint

    @property
    def priority(self) -> int:
        return self.profile.priority


def fits(need: Need, machine: Machine) -> bool:
    """Whether a machine could serve the need: its labels, zone and type pass the need's
    requirements and it holds one `min_unit`. The one fit predicate of the engine, its
    verdicts and the AvailableCapacity hints."""
    return need.profile.matches(machine) and rv.covers(machine.alloc, need.min_unit)


def credit(need: Need, machine: Machine) -> Vector:
    """How much of the need a machine counted for it covers: its allocatable, or for a need
    of whole units only the units that fit on it (two 3-GPU gangs on an 8-GPU machine
    cover 6 GPUs of the need, not 8)."""
    if need.whole_units:
        return rv.whole_units(machine.alloc, need.min_unit)
    return machine.alloc


# A need's place in the snapshot, then the need: ((-priority, arrival, cluster, row), need).
# Typed as any tuple, which compiled code keeps as the object it is: under a fixed-length
# type it would unpack every kept entry and build it anew on each merge.
_Placed = tuple[Any, ...]


class NeedsTable:
    def __init__(self) -> None:
        self._by_cluster: dict[str, tuple[Need, ...]] = {}
        self._size = 0  # rows of every cluster
        self.version = next(_VERSIONS)  # changes with every replacement that changes rows
        # The last snapshot with each need's place, and the clusters replaced since:
        # a roll-up replaces one cluster, so the next snapshot merges only its rows in.
        self._placed: list[_Placed] | None = None
        self._replaced: set[str] = set()
        # The last snapshot's needs; rows per cluster when it was taken; and (built when
        # first needed) each (cluster, row)'s place in it. A roll-up that changes only
        # amounts keeps every row's place, so its needs are swapped in where they stand.
        self._needs: list[Need] = []
        self._rows_placed: dict[str, int] = {}
        self._at: dict[tuple[str, int], int] | None = None

    def __len__(self) -> int:
        return self._size

    def replace(self, cluster: str, needs: list[Need]) -> None:
        """Swap the cluster's whole demand; an empty list withdraws it."""
        if any(n.cluster != cluster for n in needs):
            raise ValueError(f"roll-up for {cluster} carries another cluster's need")
        rows = tuple(needs)
        if rows == self._by_cluster.get(cluster, ()):
            return  # the same demand again: steady state
        self.version = next(_VERSIONS)
        self._replaced.add(cluster)
        self._size += len(rows) - len(self._by_cluster.get(cluster, ()))
        if rows:
            self._by_cluster[cluster] = rows
        else:
            self._by_cluster.pop(cluster, None)

    def rows(self, cluster: str) -> tuple[Need, ...]:
        return self._by_cluster.get(cluster, ())

    def clusters(self) -> list[str]:
        return sorted(self._by_cluster)

    def snapshot(self) -> list[Need]:
        """Every need, ordered priority desc, arrival asc, cluster asc (stable otherwise)."""
        placed, replaced = self._placed, self._replaced
        if placed is not None and replaced and self._swap_in_place(placed, replaced):
            self._replaced = set()
            return list(self._needs)
        if placed is None or 2 * len(replaced) > len(self._by_cluster):
            placed = sorted(self._placements(self._by_cluster))
        elif replaced:
            # Two sorted runs, which the sort merges in one pass.
            kept = [entry for entry in placed if entry[1].cluster not in replaced]
            placed = sorted(kept + sorted(self._placements(replaced)))
        if placed is not self._placed:
            self._needs = [need for _, need in placed]
            self._rows_placed = {c: len(rows) for c, rows in self._by_cluster.items()}
            self._at = None
        self._placed, self._replaced = placed, set()
        return list(self._needs)

    def _swap_in_place(self, placed: list[_Placed], replaced: set[str]) -> bool:
        """Where every replaced cluster kept its row count and each row its priority and
        arrival, the rows keep their places: put the new needs there. False otherwise,
        having changed nothing."""
        by_cluster, counted = self._by_cluster, self._rows_placed
        if any(len(by_cluster.get(c, ())) != counted.get(c, 0) for c in replaced):
            return False
        at = self._at
        if at is None:
            at = self._at = {(key[2], key[3]): i for i, (key, _) in enumerate(placed)}
        for cluster in replaced:
            for row, need in enumerate(by_cluster.get(cluster, ())):
                key = placed[at[(cluster, row)]][0]
                if key[0] != -need.priority or key[1] != need.arrival:
                    return False
        needs = self._needs
        for cluster in replaced:
            for row, need in enumerate(by_cluster.get(cluster, ())):
                i = at[(cluster, row)]
                placed[i] = (placed[i][0], need)
                needs[i] = need
        return True

    def _placements(self, clusters: Iterable[str]) -> list[_Placed]:
        # (cluster, row) makes every place unique: needs themselves are never compared.
        return [
            ((-need.priority, need.arrival, cluster, row), need)
            for cluster in clusters
            for row, need in enumerate(self._by_cluster.get(cluster, ()))
        ]
