"""Phase 3: give back what demand no longer claims.

Reclaim is shrinkage only: a Configured machine that Phase 1 did not claim
for any need of its cluster is drained, once the cluster has sent its first
roll-up since this process started. Idle machines nobody claimed return to
quota slots after a hold that depends on their capacity type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import CapacityType, MachineState
from bigfleet.shard.engine.settings import DEFAULT_IDLE_HOLD_S, EngineSettings

S = MachineState


def reclaims(
    inventory: Inventory,
    claimed: Collection[str],
    reported: Collection[str],
    grace_seconds: int = EngineSettings().reclaim_grace_s,
    configured_claims: Mapping[str, int] | None = None,
) -> list[Action]:
    """Configured machines no need claims, per cluster in keep order (the expensive tail),
    each drained with `grace_seconds` (EngineSettings.reclaim_grace_s).

    `configured_claims` (Phase1Result's) counts, per cluster, the claimed machines that
    are Configured: a cluster whose count is all its Configured machines is passed over
    without looking at each, which in a steady fleet is nearly every cluster."""
    actions = []
    for cluster in inventory.clusters_with(S.CONFIGURED):
        if cluster not in reported:
            continue  # never reclaim before the cluster said what it wants
        if configured_claims is not None and configured_claims.get(
            cluster, 0
        ) == inventory.count_of(cluster, S.CONFIGURED):
            continue
        for m in inventory.keep_order(cluster, S.CONFIGURED):
            if m.id not in claimed:
                actions.append(
                    Action(
                        kind=ActionKind.RECLAIM,
                        machine_id=m.id,
                        cluster=cluster,
                        reason="phase3.excess",
                        grace_seconds=grace_seconds,
                    )
                )
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
