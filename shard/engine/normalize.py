"""Same folding: co-location gangs smaller than one machine become plain demand.

A gang whose whole aggregate fits on one available machine needs no topology
domain: any machine hosts it. Such gangs of equal shape within a cluster fold
into one need without the Same requirement, whose unit is one gang. Runs once
per cycle before every phase (engine.md §1.7).
"""

from __future__ import annotations

from dataclasses import dataclass

from shard.engine import resources as rv
from shard.engine.inventory import Inventory
from shard.engine.machine import Machine, MachineState
from shard.engine.needs import Need

S = MachineState


@dataclass(slots=True)
class _Fold:
    first: Need
    count: int = 0
    arrival: int = 0


def _positive(vector: rv.Vector) -> dict[str, int]:
    return {k: v for k, v in vector.items() if v > 0}


class _Hosts:
    """Answers "does any available machine host this whole gang?" for one cycle.

    Pools are narrowed to the need's pinned instance types, and a pool whose
    per-dimension maximum cannot cover the gang is skipped without a scan: most
    gangs span several machines, so most answers are a cheap no.
    """

    def __init__(self, inventory: Inventory) -> None:
        self.inv = inventory
        self._ceilings: dict[int, dict[str, int]] = {}

    def _pools(self, need: Need) -> list[list[Machine]]:
        types = need.profile.pinned_types
        pools = []
        for state in (S.CONFIGURED, S.CONFIGURING):
            if types:
                pools.append(self.inv.keep_order_of_types(need.cluster, state, types))
            else:
                pools.append(self.inv.keep_order(need.cluster, state))
        for state in (S.IDLE, S.SPECULATIVE):
            if types:
                pools.append(self.inv.in_state_of_types(state, types))
            else:
                pools.append(self.inv.in_state(state))
        return pools

    def _ceiling(self, pool: list[Machine]) -> dict[str, int]:
        ceiling = self._ceilings.get(id(pool))
        if ceiling is None:
            ceiling = {}
            for m in pool:
                ceiling = rv.maximum(ceiling, m.alloc)
            self._ceilings[id(pool)] = ceiling
        return ceiling

    def any(self, need: Need) -> bool:
        want = _positive(need.aggregate)
        for pool in self._pools(need):
            if not rv.covers(self._ceiling(pool), want):
                continue
            if any(need.profile.matches(m) and rv.covers(m.alloc, want) for m in pool):
                return True
        return False


def normalize(inventory: Inventory, demand: list[Need]) -> list[Need]:
    if not any(n.profile.same is not None for n in demand):
        return demand
    hosts = _Hosts(inventory)
    out: list[Need] = []
    folds: dict[tuple[str, str, str], _Fold] = {}
    for need in demand:
        if need.profile.same is None or not hosts.any(need):
            out.append(need)
            continue
        stripped = need.profile.without_same()
        key = (need.cluster, stripped.fingerprint, rv.canonical(need.aggregate))
        fold = folds.setdefault(key, _Fold(first=need))
        fold.count += 1
        if need.arrival and (fold.arrival == 0 or need.arrival < fold.arrival):
            fold.arrival = need.arrival
    for key in sorted(folds):
        fold = folds[key]
        out.append(
            Need(
                cluster=fold.first.cluster,
                profile=fold.first.profile.without_same(),
                aggregate=rv.scale(fold.first.aggregate, fold.count),
                min_unit=dict(fold.first.aggregate),
                arrival=fold.arrival,
                group="",
            )
        )
    return out
