"""Same folding: co-location gangs smaller than one machine become plain demand.

A gang whose whole aggregate fits on one available machine needs no topology
domain: any machine hosts it. Such gangs of equal shape within a cluster fold
into one need without the Same requirement, whose unit is one gang. Runs once
per cycle before every phase (engine.md §1.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import Machine, MachineState
from bigfleet.shard.engine.needs import Need

S = MachineState


@dataclass(slots=True)
class _Fold:
    first: Need
    count: int = 0
    arrival: int = 0


def _positive(vector: rv.Vector) -> dict[str, int]:
    return {k: v for k, v in vector.items() if v > 0}


def _pool(inv: Inventory, need: Need, state: MachineState, want: rv.Vector) -> list[Machine]:
    """The need's machines in `state`, or none when the bucket's ceiling is too small.

    Most gangs span several machines, so most answers are this cheap no.
    """
    cluster, types = need.cluster, need.profile.pinned_types
    if state in (S.CONFIGURED, S.CONFIGURING):
        if not rv.covers(inv.cluster_ceiling(cluster, state, types), want):
            return []
        return (
            inv.keep_order_of_types(cluster, state, types)
            if types
            else inv.keep_order(cluster, state)
        )
    if not rv.covers(inv.ceiling(state, types), want):
        return []
    return inv.in_state_of_types(state, types) if types else inv.in_state(state)


def _hosted_whole(inv: Inventory, need: Need) -> bool:
    """Does one machine the need could use (bound to its cluster or acquirable) host all of it?"""
    want = _positive(need.aggregate)
    return any(
        need.profile.matches(m) and rv.covers(m.alloc, want)
        for state in (S.CONFIGURED, S.CONFIGURING, S.IDLE, S.SPECULATIVE)
        for m in _pool(inv, need, state, want)
    )


@dataclass(slots=True)
class FoldMemo:
    """Answers to "does one machine host this gang whole?" kept across cycles.

    An answer depends on the gang's cluster, profile and size and on the
    machines it could use, so it is kept per gang shape with a stamp of those
    machines and stands while the stamp does. Most needs are the very objects
    of last cycle (a roll-up replaces one cluster's rows), so answers are also
    kept per need object, which is cheaper to look up than its shape.

    A "no" because no machine the gang could use is large enough in every
    dimension (no pool's ceiling covers it: most gangs) depends only on those
    ceilings, which rarely move when supply does; it is kept against them.

    Entries are typed as any tuple so that compiled code carries a standing
    entry over as it is rather than building it anew every cycle.
    """

    # shape -> (stamp, answer)
    by_shape: dict[tuple[object, ...], tuple[Any, ...]] = field(default_factory=dict)
    # id(need) -> (the need, kept alive so its id is not reused; whether the answer is a
    # "no" by ceilings; the stamp or the ceilings it stands on; the answer)
    by_need: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    # The last call's ceilings per (cluster, pinned types), as `stamps` below.
    ceilings: dict[tuple[object, ...], Any] = field(default_factory=dict)
    # The last call's stamps per cluster and pinned types: an equal stamp is taken
    # from here, so that a standing answer's stamp compares by identity.
    stamps: dict[str, dict[tuple[str, ...], Any]] = field(default_factory=dict)
    version: int = 0  # the inventory's at the last call: while it holds, so do the stamps


def _hosted_flags(inventory: Inventory, demand: list[Need], memo: FoldMemo) -> list[bool]:
    """For each need, whether it is a Same need one machine hosts whole."""
    # An unchanged inventory leaves every stamp and ceiling as it was: a need seen last
    # call keeps its answer without either being looked at, and both tables carry on.
    unchanged = memo.version == inventory.version
    stamps: dict[str, dict[tuple[str, ...], Any]] = memo.stamps if unchanged else {}
    by_shape: dict[tuple[object, ...], tuple[Any, ...]] = {}
    by_need: dict[int, tuple[Any, ...]] = {}
    ceilings_now: dict[tuple[object, ...], Any] = memo.ceilings if unchanged else {}
    flags = []
    for need in demand:
        if need.profile.same is None:
            flags.append(False)
            continue
        at: Any = id(need)  # boxed once: compiled code would box it at each use
        known = memo.by_need.get(at)
        if known is not None and known[0] is not need:
            known = None
        if unchanged and known is not None:
            by_need[at] = known
            flags.append(known[3])
            continue
        types = need.profile.pinned_types
        if known is not None and known[1]:  # a "no" by ceilings
            ceilings = _ceilings(inventory, need.cluster, types, ceilings_now, memo)
            if known[2] is ceilings or known[2] == ceilings:
                by_need[at] = known
                flags.append(False)
                continue
        of_cluster = stamps.get(need.cluster)
        if of_cluster is None:
            of_cluster = stamps[need.cluster] = {}
        stamp = of_cluster.get(types)
        if stamp is None:
            stamp = (
                inventory.bound_stamp(need.cluster, types),
                inventory.acquirable_stamp(S.IDLE, types),
                inventory.acquirable_stamp(S.SPECULATIVE, types),
            )
            kept = memo.stamps.get(need.cluster, {}).get(types)
            of_cluster[types] = stamp = kept if kept == stamp else stamp
        if known is not None and not known[1] and (known[2] is stamp or known[2] == stamp):
            whole = known[3]
            by_need[at] = known
        else:
            ceilings = _ceilings(inventory, need.cluster, types, ceilings_now, memo)
            want = _positive(need.aggregate)
            if not any(rv.covers(ceiling, want) for ceiling in ceilings):
                by_need[at] = (need, True, ceilings, False)
                flags.append(False)
                continue
            shape = (need.cluster, need.profile.fingerprint, tuple(need.aggregate.items()))
            answer = by_shape.get(shape) or memo.by_shape.get(shape)
            if answer is None or answer[0] != stamp:
                answer = (stamp, _hosted_whole(inventory, need))
            by_shape[shape] = answer
            whole = answer[1]
            by_need[at] = (need, False, stamp, whole)
        flags.append(whole)
    memo.by_need = by_need
    memo.stamps = stamps
    memo.ceilings = ceilings_now
    memo.version = inventory.version
    # Shapes answered by object identity were not looked up: older answers stay (a
    # stale one is told by its stamp) until they outnumber the needs.
    if len(memo.by_shape) > 2 * len(demand):
        memo.by_shape = by_shape
    else:
        memo.by_shape.update(by_shape)
    return flags


def _ceilings(
    inventory: Inventory,
    cluster: str,
    types: tuple[str, ...],
    now: dict[tuple[object, ...], Any],
    memo: FoldMemo,
) -> Any:
    """The ceilings of the four pools a gang of the cluster and types could use (as
    `_pool` reads them), once per call; last call's object when equal."""
    key: tuple[object, ...] = (cluster, types)
    found = now.get(key)
    if found is None:
        found = (
            inventory.cluster_ceiling(cluster, S.CONFIGURED, types),
            inventory.cluster_ceiling(cluster, S.CONFIGURING, types),
            inventory.ceiling(S.IDLE, types),
            inventory.ceiling(S.SPECULATIVE, types),
        )
        kept = memo.ceilings.get(key)
        now[key] = found = kept if kept == found else found
    return found


def normalize(inventory: Inventory, demand: list[Need], memo: FoldMemo | None = None) -> list[Need]:
    """Demand with hostable Same gangs folded; `memo` carries answers across cycles."""
    return normalize_traced(inventory, demand, memo)[0]


def normalize_traced(
    inventory: Inventory, demand: list[Need], memo: FoldMemo | None = None
) -> tuple[list[Need], list[int] | None]:
    """`normalize`, plus where each need of `demand` went: the index of the normalised
    need that stands for it (a folded gang shares its fold's), or None when nothing
    folded and every need stands for itself."""
    if not any(n.profile.same is not None for n in demand):
        return demand, None
    hosted = _hosted_flags(inventory, demand, memo if memo is not None else FoldMemo())
    if not any(hosted):  # no gang folds: the usual case at scale
        return demand, None
    out: list[Need] = []
    origins: list[int] = []
    folds: dict[tuple[str, str, str], _Fold] = {}
    folded_into: list[tuple[int, tuple[str, str, str]]] = []
    for position, (need, whole) in enumerate(zip(demand, hosted, strict=True)):
        if not whole:
            origins.append(len(out))
            out.append(need)
            continue
        origins.append(-1)  # filled in once the folds are placed
        stripped = need.profile.without_same()
        key = (need.cluster, stripped.fingerprint, rv.canonical(need.aggregate))
        folded_into.append((position, key))
        fold = folds.setdefault(key, _Fold(first=need))
        fold.count += 1
        if need.arrival and (fold.arrival == 0 or need.arrival < fold.arrival):
            fold.arrival = need.arrival
    placed: dict[tuple[str, str, str], int] = {}
    for key in sorted(folds):
        fold = folds[key]
        placed[key] = len(out)
        out.append(
            Need(
                cluster=fold.first.cluster,
                profile=fold.first.profile.without_same(),
                aggregate=rv.scale(fold.first.aggregate, fold.count),
                min_unit=dict(fold.first.aggregate),
                arrival=fold.arrival,
                group="",
                whole_units=True,  # a gang is never split across machines
            )
        )
    for position, key in folded_into:
        origins[position] = placed[key]
    return out, origins
