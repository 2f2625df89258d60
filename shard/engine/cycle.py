"""One decision cycle: normalise, park, Phase 1, Phase 2, Phase 3, rails, shortfalls.

All phases read the same inventory state; the engine never mutates it. The
caller (shard runtime or simulator) executes `rails.execute` and reconciles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shard.engine import rails
from shard.engine.decision import phase1, phase2, phase3
from shard.engine.decision.actions import Action
from shard.engine.inventory import Inventory
from shard.engine.needs import NeedsTable
from shard.engine.normalize import normalize
from shard.engine.parking import ParkingLedger
from shard.engine.shortfall import ShortfallLedger


@dataclass(slots=True)
class CycleResult:
    decided: list[Action]
    rails: rails.RailOutcome
    phase1: phase1.Phase1Result
    phase2: phase2.Phase2Result
    seconds: dict[str, float] = field(default_factory=dict)  # per phase, for metrics
    deduped: int = 0  # actions dropped because another phase already acts on the machine


class Engine:
    """Owns the state that spans cycles: parking ages and the shortfall ledger."""

    def __init__(self, settings: rails.RailSettings | None = None) -> None:
        self.settings = settings or rails.RailSettings()
        self.parking = ParkingLedger()
        self.shortfalls = ShortfallLedger()

    def cycle(
        self, inventory: Inventory, table: NeedsTable, reported: set[str], now: float
    ) -> CycleResult:
        """Decide one cycle. `reported`: clusters that sent a roll-up since process start."""
        clock = time.perf_counter
        seconds: dict[str, float] = {}
        start = clock()
        demand = self.parking.stamp(normalize(inventory, table.snapshot()))
        seconds["normalize"] = clock() - start

        mark = clock()
        first = phase1.run(inventory, demand)
        self.parking.update(demand, first.unsatisfied)
        seconds["phase1"] = clock() - mark

        mark = clock()
        second = phase2.run(inventory, first.unsatisfied)
        seconds["phase2"] = clock() - mark

        mark = clock()
        claimed = first.claimed.keys()
        third = phase3.reclaims(inventory, claimed, reported) + phase3.releases(
            inventory, claimed, now
        )
        seconds["phase3"] = clock() - mark

        decided, deduped = _one_action_per_machine(first.actions + second.actions + third)
        outcome = rails.apply(decided, self.settings, inventory.configured_per_cluster())
        self.shortfalls.record(second.unresolved)
        seconds["cycle"] = clock() - start
        return CycleResult(decided, outcome, first, second, seconds, deduped)


def _one_action_per_machine(actions: list[Action]) -> tuple[list[Action], int]:
    """Keep the first action on each machine, phase order first.

    Phase 2 may pick as victim an unclaimed machine that Phase 3 also reclaims;
    the preemption (shorter grace, known preemptor) is the one that counts.
    """
    seen: set[str] = set()
    kept = []
    for action in actions:
        if action.machine_id not in seen:
            seen.add(action.machine_id)
            kept.append(action)
    return kept, len(actions) - len(kept)
