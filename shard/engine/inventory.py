"""Inventory: every machine a shard owns, with the orderings the engine reads each cycle.

The single writer is `upsert`/`remove`, which validate the record and keep the
indexes: by state; by (state, instance type); by (cluster, state); and the
idle-since stamps that drive release holds. Sorted views are cached per index
bucket and rebuilt only for buckets that changed, so a quiet cycle costs
little.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from typing import Any

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.machine import CapacityType, Machine, MachineState, check

# Versions are unique across instances, so a cache keyed on one can never confuse two.
_VERSIONS = itertools.count(1)

S = MachineState


def _price_order(m: Machine) -> tuple[float, str]:
    return (m.price_per_hour, m.id)


def _keep_order(m: Machine) -> tuple[float, float, str]:
    # Cheapest first, then the most valuable to keep: the unclaimed tail is what goes.
    return (m.price_per_hour, -m.assigned_reclamation_penalty, m.id)


def _max_of(ceilings: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ceiling in ceilings:
        out = rv.maximum(out, ceiling)
    return out


class _SortedBuckets:
    """Machines grouped by a key, each group sorted on demand and cached.

    A change to a group whose sorted view is cached patches a copy of the view
    (a binary search and a C-level list copy) instead of dropping it, so one
    machine changing in a group of 100,000 costs no re-sort; past a few patches
    between two reads the view is dropped and sorted afresh on the next read.
    Views already handed out are never mutated. Each group's per-dimension
    ceiling (the largest allocatable of any member) is cached too: "could any
    machine here host this?" is then one check.
    """

    _MAX_PATCHES = 8  # between two reads; a bulk change sorts once instead

    def __init__(self, order: Callable[[Machine], Any]) -> None:
        self._order = order
        self._members: dict[Any, dict[str, Machine]] = defaultdict(dict)
        self._sorted: dict[Any, list[Machine]] = {}
        self._patches: dict[Any, int] = {}
        self._ceilings: dict[Any, dict[str, int]] = {}

    def put(self, key: Any, machine: Machine) -> None:
        self._members[key][machine.id] = machine
        ceiling = self._ceilings.get(key)
        if ceiling is not None:
            self._ceilings[key] = rv.maximum(ceiling, machine.alloc)
        view = self._patchable(key)
        if view is not None:
            bisect.insort(view, machine, key=self._order)

    def drop(self, key: Any, machine_id: str) -> None:
        members = self._members.get(key)
        machine = members.pop(machine_id, None) if members is not None else None
        if machine is None:
            return
        self._ceilings.pop(key, None)
        if not members:
            del self._members[key]
        view = self._patchable(key)
        if view is not None:
            at = bisect.bisect_left(view, self._order(machine), key=self._order)
            if at < len(view) and view[at].id == machine_id:
                del view[at]
            else:  # the order key changed under us: sort afresh
                self._sorted.pop(key, None)

    def _patchable(self, key: Any) -> list[Machine] | None:
        """A fresh copy of the cached view to patch (now cached), or None to re-sort later."""
        view = self._sorted.get(key)
        if view is None:
            return None
        patches = self._patches.get(key, 0)
        if patches >= self._MAX_PATCHES:
            del self._sorted[key]
            return None
        self._patches[key] = patches + 1
        view = self._sorted[key] = list(view)
        return view

    def ceiling(self, key: Any) -> dict[str, int]:
        cached = self._ceilings.get(key)
        if cached is None:
            cached = {}
            for shape in {
                id(m.alloc): m.alloc for m in self._members.get(key, {}).values()
            }.values():
                cached = rv.maximum(cached, shape)
            self._ceilings[key] = cached
        return cached

    def sorted(self, key: Any) -> list[Machine]:
        self._patches.pop(key, None)
        cached = self._sorted.get(key)
        if cached is None:
            cached = sorted(self._members.get(key, {}).values(), key=self._order)
            self._sorted[key] = cached
        return cached

    def groups(self) -> Iterable[Any]:
        return self._members.keys()

    def count(self, key: Any) -> int:
        return len(self._members.get(key, ()))


class Inventory:
    def __init__(self) -> None:
        self._machines: dict[str, Machine] = {}
        self._by_state_type = _SortedBuckets(_price_order)
        self._by_state = _SortedBuckets(_price_order)
        self._by_cluster_state = _SortedBuckets(_keep_order)
        self._by_cluster_state_type = _SortedBuckets(_keep_order)
        self._idle_since: dict[str, float] = {}
        # Idle machines per capacity type, longest idle first: release scans stop early.
        self._idle_by_type = _SortedBuckets(lambda m: (self._idle_since.get(m.id, 0.0), m.id))
        self.version = next(_VERSIONS)  # changes with every write that changes a machine
        # Finer stamps (values of `version`) for caches that read only part of the fleet:
        # bound machines per cluster and per (cluster, instance type); acquirable
        # (Idle, Speculative) machines per state and per (state, instance type).
        self._stamps: dict[object, int] = {}
        # Machines per (state, signature), with a sample machine of the signature:
        # "how many machines could this profile use, per state" is then a walk over
        # the few shapes in the fleet, not over the machines (verdicts read it). The
        # sample may have left since; it is read only for what its signature fixes.
        self._shapes: dict[MachineState, dict[tuple[object, ...], list[Any]]] = defaultdict(dict)
        # Machines per (state, capacity type): what the shard's inventory gauge shows.
        self._kinds: dict[tuple[MachineState, CapacityType], int] = {}

    def __len__(self) -> int:
        return len(self._machines)

    def __contains__(self, machine_id: object) -> bool:
        return machine_id in self._machines

    def get(self, machine_id: str) -> Machine | None:
        return self._machines.get(machine_id)

    def all(self) -> list[Machine]:
        """Every machine in id order."""
        return [self._machines[k] for k in sorted(self._machines)]

    def machines(self) -> list[Machine]:
        """Every machine, in no set order: for counts and scans, which need not pay for
        sorting every id (a third of a second at 500,000 machines)."""
        return list(self._machines.values())

    def upsert(self, machine: Machine, now: float) -> None:
        """Insert or replace a machine; InvalidMachine leaves the inventory untouched."""
        check(machine)
        previous = self._machines.get(machine.id)
        if previous == machine:
            return  # a replayed record: nothing to re-index, the Idle stamp stays
        self.version = next(_VERSIONS)
        if previous is not None:
            self._unindex(previous)
            self._stamp(previous)
        self._stamp(machine)
        self._machines[machine.id] = machine
        if machine.state == S.IDLE:
            if previous is None or previous.state != S.IDLE:
                self._idle_since[machine.id] = now  # entry into Idle; Idle->Idle keeps the stamp
        else:
            self._idle_since.pop(machine.id, None)
        self._index(machine)

    def remove(self, machine_id: str) -> None:
        machine = self._machines.pop(machine_id, None)
        if machine is not None:
            self.version = next(_VERSIONS)
            self._stamp(machine)
            self._unindex(machine)
            self._idle_since.pop(machine_id, None)

    def _stamp(self, m: Machine) -> None:
        stamps, version = self._stamps, self.version
        if m.cluster:
            stamps[("cluster", m.cluster)] = version
            stamps[("cluster", m.cluster, m.instance_type)] = version
        if m.state in (S.IDLE, S.SPECULATIVE, S.CONFIGURED):
            stamps[("state", m.state)] = version
            stamps[("state", m.state, m.instance_type)] = version

    def bound_stamp(self, cluster: str, types: tuple[str, ...] = ()) -> object:
        """Changes whenever a machine of `types` (any type when empty) bound to, or
        leaving, `cluster` changes."""
        if not types:
            return self._stamps.get(("cluster", cluster), 0)
        return tuple(self._stamps.get(("cluster", cluster, t), 0) for t in types)

    def acquirable_stamp(self, state: MachineState, types: tuple[str, ...] = ()) -> object:
        """Changes whenever a machine of `types` entering, in or leaving `state` (Idle,
        Speculative, or Configured: Phase 2's victims) changes."""
        if not types:
            return self._stamps.get(("state", state), 0)
        return tuple(self._stamps.get(("state", state, t), 0) for t in types)

    def _index(self, m: Machine) -> None:
        shape = self._shapes[m.state].get(m.signature)
        if shape is None:
            self._shapes[m.state][m.signature] = [1, m]
        else:
            shape[0] += 1
        kind = (m.state, m.capacity_type)
        self._kinds[kind] = self._kinds.get(kind, 0) + 1
        if m.state == S.IDLE:
            self._idle_by_type.put(m.capacity_type, m)
        self._by_state.put(m.state, m)
        self._by_state_type.put((m.state, m.instance_type), m)
        if m.cluster:
            self._by_cluster_state.put((m.cluster, m.state), m)
            self._by_cluster_state_type.put((m.cluster, m.state, m.instance_type), m)

    def _unindex(self, m: Machine) -> None:
        shapes = self._shapes[m.state]
        shape = shapes[m.signature]
        shape[0] -= 1
        if shape[0] == 0:
            del shapes[m.signature]
        kind = (m.state, m.capacity_type)
        left = self._kinds[kind] - 1
        if left:
            self._kinds[kind] = left
        else:
            del self._kinds[kind]
        if m.state == S.IDLE:
            self._idle_by_type.drop(m.capacity_type, m.id)
        self._by_state.drop(m.state, m.id)
        self._by_state_type.drop((m.state, m.instance_type), m.id)
        if m.cluster:
            self._by_cluster_state.drop((m.cluster, m.state), m.id)
            self._by_cluster_state_type.drop((m.cluster, m.state, m.instance_type), m.id)

    def shapes(self, state: MachineState) -> Iterable[tuple[int, Machine]]:
        """(count, sample) per machine signature in `state`."""
        return ((count, sample) for count, sample in self._shapes[state].values())

    def idle_since(self, machine_id: str) -> float | None:
        return self._idle_since.get(machine_id)

    def idle_longest_first(self, capacity_type: CapacityType) -> list[Machine]:
        """Idle machines of a capacity type, earliest idle-since stamp first."""
        return self._idle_by_type.sorted(capacity_type)

    def in_state(self, state: MachineState) -> list[Machine]:
        """Machines in `state`, price asc then id asc."""
        return self._by_state.sorted(state)

    def in_state_of_types(self, state: MachineState, types: Iterable[str]) -> list[Machine]:
        """Machines in `state` of the given instance types, price asc then id asc."""
        pools = [self._by_state_type.sorted((state, t)) for t in sorted(set(types))]
        if len(pools) == 1:
            return pools[0]
        return sorted((m for pool in pools for m in pool), key=_price_order)

    def ceiling(self, state: MachineState, types: Collection[str] = ()) -> dict[str, int]:
        """Per dimension, the largest allocatable among machines in `state` (of `types`)."""
        if not types:
            return self._by_state.ceiling(state)
        if len(types) == 1:
            return self._by_state_type.ceiling((state, *types))
        return _max_of(self._by_state_type.ceiling((state, t)) for t in set(types))

    def cluster_ceiling(
        self, cluster: str, state: MachineState, types: Collection[str] = ()
    ) -> dict[str, int]:
        """`ceiling` over one cluster's machines."""
        if not types:
            return self._by_cluster_state.ceiling((cluster, state))
        if len(types) == 1:
            return self._by_cluster_state_type.ceiling((cluster, state, *types))
        return _max_of(self._by_cluster_state_type.ceiling((cluster, state, t)) for t in set(types))

    def keep_order(self, cluster: str, state: MachineState) -> list[Machine]:
        """A cluster's machines in `state`: price asc, reclamation penalty desc, id asc."""
        return self._by_cluster_state.sorted((cluster, state))

    def keep_order_of_types(
        self, cluster: str, state: MachineState, types: Iterable[str]
    ) -> list[Machine]:
        """`keep_order` narrowed to the given instance types."""
        pools = [
            self._by_cluster_state_type.sorted((cluster, state, t)) for t in sorted(set(types))
        ]
        if len(pools) == 1:
            return pools[0]
        return sorted((m for pool in pools for m in pool), key=_keep_order)

    def count(self, state: MachineState) -> int:
        return self._by_state.count(state)

    def count_of(self, cluster: str, state: MachineState) -> int:
        """How many of the cluster's machines are in `state`."""
        return self._by_cluster_state.count((cluster, state))

    def clusters_with(self, state: MachineState) -> list[str]:
        return sorted(c for c, s in self._by_cluster_state.groups() if s == state)

    def count_by_kind(self) -> dict[tuple[MachineState, CapacityType], int]:
        """Machines per (state, capacity type), kept as machines are written."""
        return dict(self._kinds)

    def count_by_state(self) -> dict[MachineState, int]:
        return {s: n for s in MachineState if (n := self._by_state.count(s))}

    def configured_per_cluster(self) -> dict[str, int]:
        return {
            c: self._by_cluster_state.count((c, S.CONFIGURED))
            for c in self.clusters_with(S.CONFIGURED)
        }
