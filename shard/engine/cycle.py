"""One decision cycle: normalise, park, Phase 1, Phase 2, Phase 3, rails, shortfalls.

All phases read the same inventory state; the engine never mutates it. The
caller (shard runtime or simulator) executes `rails.execute` and reconciles.

Work is proportional to what changed: when inventory, demand, reporting
clusters and parking are all as they were last cycle, the phases' decisions
are reused and only the clock-driven idle release is recomputed.

A cycle runs with the cyclic garbage collector paused and ends with a
collection of the young generations (timed as `collect`): a changed cycle
allocates hundreds of thousands of containers, and each allocation threshold
it crossed started a collection that walked whatever the cycle had built so
far, up to half of a large cycle's time, and the event loop waited through
every full one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from bigfleet.shard.engine import rails
from bigfleet.shard.engine.decision import phase1, phase2, phase3
from bigfleet.shard.engine.decision.actions import Action
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.normalize import FoldMemo, normalize_traced
from bigfleet.shard.engine.parking import ParkingLedger
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.engine.shortfall import ShortfallLedger
from bigfleet.shard.engine.verdicts import VerdictBook

_Inputs = tuple[int, int, frozenset[str]]


@dataclass(slots=True)
class _Normalized:
    inputs: _Inputs
    reported: list[Need]  # the table's snapshot
    demand: list[Need]
    origins: list[int] | None  # see normalize_traced


@dataclass(slots=True)
class CycleResult:
    decided: list[Action]
    rails: rails.RailOutcome
    phase1: phase1.Phase1Result
    phase2: phase2.Phase2Result
    seconds: dict[str, float] = field(default_factory=dict)  # per phase, for metrics
    deduped: int = 0  # actions dropped because another phase already acts on the machine
    reused: bool = False  # nothing changed: the phases' decisions were reused


@dataclass(slots=True)
class _Decisions:
    key: tuple[_Inputs, tuple[bool, ...]]
    first: phase1.Phase1Result
    second: phase2.Phase2Result
    reclaims: list[Action]


class Engine:
    """Owns the state that spans cycles: parking ages, the shortfall ledger, last decisions,
    and (unless `verdicts=False`) the per-need verdicts of the last cycle.

    `settings` is every tunable the decisions read; only its rails may change between
    cycles (`set_rails`: the Shard resource's switches), the rest is fixed at start."""

    def __init__(self, settings: EngineSettings | None = None, *, verdicts: bool = True) -> None:
        self.settings = settings or EngineSettings()
        self.parking = ParkingLedger(self.settings)
        self.shortfalls = ShortfallLedger()
        self.verdicts = VerdictBook() if verdicts else None
        self._normalized: _Normalized | None = None
        self._fold_memo = FoldMemo()
        self._phase2_memo = phase2.Phase2Memo()
        self._last: _Decisions | None = None
        self.phase1_memo = phase1.Phase1Memo(rank_domains=verdicts)
        # Updated with every Phase 1 run, as Phase1Result.same_claims compares with it.
        self._reclaim_memo = phase3.ReclaimMemo()

    def set_rails(self, settings: RailSettings) -> None:
        """Replace the rails from the next cycle on; the decisions' settings stay."""
        self.settings = replace(self.settings, rails=settings)

    def cycle(
        self, inventory: Inventory, table: NeedsTable, reported: set[str], now: float
    ) -> CycleResult:
        """Decide one cycle. `reported`: clusters that sent a roll-up since process start."""
        start = time.perf_counter()
        with _collector_paused():
            result = self._decide(inventory, table, reported, now)
            mark = time.perf_counter()
            # What the cycle left behind, while it is young (see the module doc), and
            # before the collector is back on: its first allocation would otherwise start
            # a collection of its own over everything the cycle allocated.
            gc.collect(1)
            result.seconds["collect"] = time.perf_counter() - mark
        result.seconds["cycle"] = time.perf_counter() - start
        return result

    def _decide(
        self, inventory: Inventory, table: NeedsTable, reported: set[str], now: float
    ) -> CycleResult:
        clock = time.perf_counter
        seconds = dict.fromkeys(("normalize", "phase1", "phase2", "phase3"), 0.0)
        start = clock()
        settings = self.settings  # one value throughout, whatever set_rails does meanwhile
        inputs: _Inputs = (inventory.version, table.version, frozenset(reported))
        if self._normalized is None or self._normalized.inputs != inputs:
            reported_needs = table.snapshot()
            normalized, origins = normalize_traced(inventory, reported_needs, self._fold_memo)
            self._normalized = _Normalized(inputs, reported_needs, normalized, origins)
        demand = self.parking.stamp(self._normalized.demand)
        seconds["normalize"] = clock() - start

        key = (inputs, tuple(n.parked for n in demand))
        reused = self._last is not None and self._last.key == key
        if not reused:
            mark = clock()
            first = phase1.run(inventory, demand, self.phase1_memo)
            seconds["phase1"] = clock() - mark
            mark = clock()
            second = phase2.run(inventory, first.unsatisfied, settings, self._phase2_memo)
            seconds["phase2"] = clock() - mark
            mark = clock()
            reclaims = phase3.reclaims(
                inventory,
                first.claimed,  # the mapping: its own membership test stores late claims
                reported,
                settings.reclaim_grace_s,
                first.configured_claims,
                first.same_claims,
                self._reclaim_memo,
            )
            seconds["phase3"] = clock() - mark
            self._last = _Decisions(key, first, second, reclaims)
        last = self._last
        assert last is not None
        self.parking.update(last.first.unsatisfied)
        if self.verdicts is not None:
            try:
                self.verdicts.record(
                    inventory,
                    self._normalized.reported,
                    self._normalized.origins,
                    demand,
                    last.first,
                    last.second,
                    self.parking.ages,
                    self.phase1_memo.candidates,
                    changed=not reused,
                )
            except Exception as err:  # explaining must never cost a cycle its actions
                self.verdicts.failed(err)  # the shard logs and counts it

        mark = clock()
        releases = phase3.releases(inventory, last.first.claimed, now, settings.idle_hold_s)
        seconds["phase3"] += clock() - mark

        decided, deduped = _one_action_per_machine(
            last.first.actions + last.second.actions + last.reclaims + releases
        )
        outcome = rails.apply(decided, settings.rails, inventory.configured_per_cluster())
        self.shortfalls.record(last.second.unresolved)
        return CycleResult(decided, outcome, last.first, last.second, seconds, deduped, reused)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (process-wide) for the block; a collector that
    was already off stays off. Reference counting still frees what the block drops."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
