"""Every formula of the decision engine, in one place. They are fixed, not pluggable.

Phase 1 orders speculative supply by effective cost; Phase 2 scores victims
and derives drain grace from the priority gap; Phase 3's blast-radius cap is
a fraction of a cluster's Configured machines.
"""

from __future__ import annotations

import math

from bigfleet import penalty
from bigfleet.shard.engine.machine import Machine

# Victim score weights: priority gap, drain speed, interruption, reclamation.
W_PRIORITY, W_DRAIN, W_INTERRUPTION, W_RECLAMATION = 1.0, 0.1, 0.1, 0.1
DRAIN_ESTIMATE_S = 30.0  # one estimate for every victim, so the drain term never discriminates
RECLAIM_GRACE_S = 600
SAME_PARK_AFTER_CYCLES = 8
SAME_REPROBE_EVERY_CYCLES = 32


def effective_cost(machine: Machine, interruption_bucket: int) -> float:
    """price + probability x penalty; with an infinite penalty only p = 0 stays finite."""
    bound = max(0.0, penalty.upper_bound(interruption_bucket))
    p = machine.interruption_probability
    if math.isinf(bound):
        return machine.price_per_hour if p == 0 else math.inf
    return machine.price_per_hour + p * bound


def victim_score(
    preemptor_priority: int, victim: Machine, drain_seconds: float = DRAIN_ESTIMATE_S
) -> float:
    """Higher is a better victim. Each reciprocal is floored so it stays finite."""
    return (
        max(0, preemptor_priority - victim.assigned_priority) * W_PRIORITY
        + (1 / max(1.0, drain_seconds)) * W_DRAIN
        + (1 / max(0.01, victim.assigned_interruption_penalty)) * W_INTERRUPTION
        + (1 / max(0.01, victim.assigned_reclamation_penalty)) * W_RECLAMATION
    )


def drain_grace_seconds(preemptor_priority: int, victim_priority: int) -> int:
    gap = preemptor_priority - victim_priority
    if gap > 900_000:
        return 10
    if gap > 500_000:
        return 30
    if gap > 100_000:
        return 120
    return 600


def reclaim_cap(fraction: float, configured: int) -> int:
    """Reclaims allowed per cluster per cycle; at least one so excess always drains."""
    return max(1, math.floor(fraction * configured))


def same_parked(age_cycles: int) -> bool:
    """Park a stuck co-location need, re-probing it every 32nd cycle."""
    return age_cycles >= SAME_PARK_AFTER_CYCLES and age_cycles % SAME_REPROBE_EVERY_CYCLES != 0
