"""Every formula of the decision engine, in one place. They are fixed, not pluggable;
their coefficients (victim weights, the drain estimate, parking ages) are EngineSettings.

Phase 1 orders speculative supply by effective cost; Phase 2 scores victims
and derives drain grace from the priority gap; Phase 3's blast-radius cap is
a fraction of a cluster's Configured machines.
"""

from __future__ import annotations

import math

from bigfleet import penalty
from bigfleet.shard.engine.machine import Machine
from bigfleet.shard.engine.settings import EngineSettings, VictimWeights

_DEFAULTS = EngineSettings()


def effective_cost(machine: Machine, interruption_bucket: int) -> float:
    """price + probability x penalty; with an infinite penalty only p = 0 stays finite."""
    bound = max(0.0, penalty.upper_bound(interruption_bucket))
    p = machine.interruption_probability
    if math.isinf(bound):
        return machine.price_per_hour if p == 0 else math.inf
    return machine.price_per_hour + p * bound


def victim_score(
    preemptor_priority: int,
    victim: Machine,
    drain_seconds: float = _DEFAULTS.drain_estimate_s,
    weights: VictimWeights = _DEFAULTS.victim_weights,
) -> float:
    """Higher is a better victim. Each reciprocal is floored so it stays finite."""
    return (
        max(0, preemptor_priority - victim.assigned_priority) * weights.priority
        + (1 / max(1.0, drain_seconds)) * weights.drain
        + (1 / max(0.01, victim.assigned_interruption_penalty)) * weights.interruption
        + (1 / max(0.01, victim.assigned_reclamation_penalty)) * weights.reclamation
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


def same_parked(age_cycles: int, park_after: int, reprobe_every: int) -> bool:
    """Park a stuck co-location need from `park_after` cycles, re-probing it every
    `reprobe_every`th cycle (8 and 32 by default)."""
    return age_cycles >= park_after and age_cycles % reprobe_every != 0
