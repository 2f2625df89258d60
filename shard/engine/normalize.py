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


def _foldable(inventory: Inventory, need: Need) -> bool:
    want = _positive(need.aggregate)

    def hosts(m: Machine) -> bool:
        return need.profile.matches(m) and rv.covers(m.alloc, want)

    bound = inventory.keep_order(need.cluster, S.CONFIGURED) + inventory.keep_order(
        need.cluster, S.CONFIGURING
    )
    free = inventory.in_state(S.IDLE) + inventory.in_state(S.SPECULATIVE)
    return any(hosts(m) for m in bound) or any(hosts(m) for m in free)


def normalize(inventory: Inventory, demand: list[Need]) -> list[Need]:
    if not any(n.profile.same is not None for n in demand):
        return demand
    out: list[Need] = []
    folds: dict[tuple[str, str, str], _Fold] = {}
    for need in demand:
        if need.profile.same is None or not _foldable(inventory, need):
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
