"""Phase 3: give back what demand no longer claims.

Reclaim is shrinkage only: a Configured machine that Phase 1 did not claim
for any need of its cluster is drained, once the cluster has sent its first
roll-up since this process started. Idle machines nobody claimed return to
quota slots after a hold that depends on their capacity type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import CapacityType, MachineState
from bigfleet.shard.engine.settings import DEFAULT_IDLE_HOLD_S, EngineSettings

S = MachineState


@dataclass(slots=True)
class ReclaimMemo:
    """Each cluster's reclaims of the last call, with its bound stamp and the grace
    they were found at: a cluster whose claims and bound machines stand has the
    same excess, so it is not scanned again."""

    # cluster -> (bound stamp, grace seconds, its reclaims)
    by_cluster: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def reclaims(
    inventory: Inventory,
    claimed: Collection[str],
    reported: Collection[str],
    grace_seconds: int = EngineSettings().reclaim_grace_s,
    configured_claims: Mapping[str, int] | None = None,
    same_claims: Collection[str] = (),
    memo: ReclaimMemo | None = None,
) -> list[Action]:
    """Configured machines no need claims, per cluster in keep order (the expensive tail),
    each drained with `grace_seconds` (EngineSettings.reclaim_grace_s).

    `configured_claims` (Phase1Result's) counts, per cluster, the claimed machines that
    are Configured: a cluster whose count is all its Configured machines is passed over
    without looking at each, which in a steady fleet is nearly every cluster.
    `same_claims` (Phase1Result's) are the clusters whose needs claimed what they
    claimed last cycle: with `memo`, such a cluster keeps its last reclaims while its
    bound machines stand."""
    actions: list[Action] = []
    kept = memo.by_cluster if memo is not None else {}
    found_now: dict[str, tuple[Any, ...]] = {}
    for cluster in inventory.clusters_with(S.CONFIGURED):
        if cluster not in reported:
            continue  # never reclaim before the cluster said what it wants
        if configured_claims is not None and configured_claims.get(
            cluster, 0
        ) == inventory.count_of(cluster, S.CONFIGURED):
            continue
        stamp = inventory.bound_stamp(cluster)
        last = kept.get(cluster) if cluster in same_claims else None
        if last is not None and last[0] == stamp and last[1] == grace_seconds:
            found_now[cluster] = last
            actions.extend(last[2])
            continue
        excess = [
            Action(
                kind=ActionKind.RECLAIM,
                machine_id=m.id,
                cluster=cluster,
                reason="phase3.excess",
                grace_seconds=grace_seconds,
            )
            for m in inventory.keep_order(cluster, S.CONFIGURED)
            if m.id not in claimed
        ]
        found_now[cluster] = (stamp, grace_seconds, excess)
        actions.extend(excess)
    if memo is not None:
        memo.by_cluster = found_now
    return actions


def releases(
    inventory: Inventory,
    claimed: Collection[str],
    now: float,
    holds: Mapping[CapacityType, float] = DEFAULT_IDLE_HOLD_S,
) -> list[Action]:
    """Idle machines held past their capacity type's hold (EngineSettings.idle_hold_s; a
    type without one is never released), in id order.

    Each capacity type is scanned longest-idle first and the scan stops at the
    first machine still within its hold, so a quiet cycle costs almost nothing.
    """
    expired = []
    for capacity_type, hold in holds.items():
        for m in inventory.idle_longest_first(capacity_type):
            since = inventory.idle_since(m.id)
            if since is None or now - since < hold:
                break
            if m.id not in claimed:
                expired.append(m.id)
    return [
        Action(kind=ActionKind.DELETE, machine_id=machine_id, cluster="", reason="phase3.release")
        for machine_id in sorted(expired)
    ]
