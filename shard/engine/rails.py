"""Safety rails between decision and execution, and the empty-roll-up quarantine.

The engine always decides a full cycle; rails decide what of it executes.
Dry-run and pause switches suppress by kind and count what they held back.
The blast-radius cap limits reclaims per cluster per cycle (later cycles
re-derive the rest). Preempts, bootstraps and provisions are never capped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.decision.cost import reclaim_cap

# Defined with the other engine settings (EngineSettings.rails); importable from here too.
from bigfleet.shard.engine.settings import RailSettings as RailSettings

ACQUISITIONS = frozenset({ActionKind.BOOTSTRAP, ActionKind.PROVISION})
# Every kind that drains or releases a machine.
RECLAIMS = frozenset({ActionKind.RECLAIM, ActionKind.PREEMPT, ActionKind.DELETE})


@dataclass(slots=True)
class RailOutcome:
    execute: list[Action] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)
    dry_run: Counter[str] = field(default_factory=Counter)
    capped: int = 0
    truncated: int = 0


def apply(
    actions: list[Action], settings: RailSettings, configured: Mapping[str, int]
) -> RailOutcome:
    """What of `actions` runs; `configured` is each cluster's Configured count this cycle."""
    outcome = RailOutcome()
    if settings.dry_run:
        outcome.dry_run.update(a.kind.value for a in actions)
        return outcome
    allowed: dict[str, int] = {}
    for action in actions:
        if (settings.pause_acquisitions and action.kind in ACQUISITIONS) or (
            settings.pause_reclaims and action.kind in RECLAIMS
        ):
            outcome.suppressed[action.kind.value] += 1
            continue
        if action.kind is ActionKind.RECLAIM and settings.reclaim_cap_fraction > 0:
            cluster = action.cluster
            if cluster not in allowed:
                allowed[cluster] = reclaim_cap(
                    settings.reclaim_cap_fraction, configured.get(cluster, 0)
                )
            if allowed[cluster] == 0:
                outcome.capped += 1
                continue
            allowed[cluster] -= 1
        outcome.execute.append(action)
    limit = settings.max_actions_per_cycle
    if limit and len(outcome.execute) > limit:
        outcome.truncated = len(outcome.execute) - limit
        del outcome.execute[limit:]
    return outcome


SUSPICIOUS_FLOOR_ROWS = 10
SUSPICIOUS_FRACTION = 0.1
CONFIRM_AFTER = 3


class RollupQuarantine:
    """Holds a roll-up that suddenly drops most of a cluster's demand, until it repeats.

    An operator that lost its informer cache can send a near-empty roll-up;
    accepting it would reclaim a whole cluster. A roll-up with fewer than a
    tenth of the last accepted rows (when that was at least ten) is held;
    the third in a row is believed.
    """

    def __init__(self) -> None:
        self._accepted_rows: dict[str, int] = {}
        self._held: dict[str, int] = {}

    def admit(self, cluster: str, rows: int) -> bool:
        baseline = self._accepted_rows.get(cluster, 0)
        suspicious = baseline >= SUSPICIOUS_FLOOR_ROWS and rows < SUSPICIOUS_FRACTION * baseline
        if suspicious:
            held = self._held.get(cluster, 0) + 1
            if held < CONFIRM_AFTER:
                self._held[cluster] = held
                return False
        self._accepted_rows[cluster] = rows
        self._held.pop(cluster, None)
        return True

    def held(self, cluster: str) -> int:
        """Consecutive roll-ups currently held for the cluster (the quarantine gauge)."""
        return self._held.get(cluster, 0)
