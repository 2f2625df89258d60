"""Per-need verdicts: what the last cycle concluded about each need, and why.

A cycle keeps references to what it already computed (demand, the phases'
results, parking ages), so retaining verdicts costs next to nothing per cycle:
only the record of when each unmet need was first unmet is updated, and only
for needs left unmet. A verdict is assembled when someone reads it; readers are
few and far between next to cycles.

Rows are the needs as their clusters reported them. A co-location gang small
enough for one machine is folded with its equals into one plain need before
the phases run (see `normalize`); each such gang reads its fold's verdict.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.decision import phase1, phase2
from bigfleet.shard.engine.decision.actions import ActionKind, Preemption, Unsatisfied
from bigfleet.shard.engine.decision.colocation import DomainCoverage
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.needs import Need, fits
from bigfleet.shard.engine.parking import ClassKey, class_key

S = MachineState

MATCHING_CAP = 10_000  # per state: enough to tell "some" from "plenty"


class Reason(StrEnum):
    SATISFIED = "Satisfied"
    PREEMPTING = "Preempting"  # lower-priority machines drain for it; nothing else missing
    PRIORITY_STARVED = "PriorityStarved"  # matching supply exists, higher precedence holds it
    NO_MATCHING_SUPPLY = "NoMatchingSupply"  # nothing matching exists in any state
    TOPOLOGY_UNSATISFIABLE = "TopologyUnsatisfiable"  # no one domain can hold the gang
    PREEMPTION_EXHAUSTED = "PreemptionExhausted"  # too few lower-priority victims


@dataclass(frozen=True, slots=True)
class MatchingSupply:
    idle: int
    configured: int
    speculative: int
    in_transition: int  # Creating, Configuring or Draining: about to be one of the above
    capped: bool  # a count stopped at MATCHING_CAP

    @property
    def total(self) -> int:
        return self.idle + self.configured + self.speculative + self.in_transition


NO_SUPPLY = MatchingSupply(0, 0, 0, 0, capped=False)
_TRANSITIONS = (S.CREATING, S.CONFIGURING, S.DRAINING)
SupplyKey = tuple[str, str]  # (profile fingerprint, canonical minimum unit)


def _supply_key(need: Need) -> SupplyKey:
    return (need.profile.fingerprint, rv.canonical(need.min_unit))


def matching_supply(inventory: Inventory, need: Need) -> MatchingSupply:
    """Machines the need could use, whoever holds them, per state."""

    def count(state: MachineState) -> int:
        return sum(n for n, sample in inventory.shapes(state) if fits(need, sample))

    idle, configured, speculative = (count(s) for s in (S.IDLE, S.CONFIGURED, S.SPECULATIVE))
    moving = sum(count(s) for s in _TRANSITIONS)
    counts = (idle, configured, speculative, moving)
    capped = any(n > MATCHING_CAP for n in counts)
    idle, configured, speculative, moving = (min(n, MATCHING_CAP) for n in counts)
    return MatchingSupply(idle, configured, speculative, moving, capped)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    satisfied: bool
    reason: Reason
    # Still missing: after Phase 2's victims when some remains, else (Preempting) what
    # the victims will bring once drained; empty when satisfied.
    deficit: rv.Vector
    claimed: int  # machines credited: bound to the cluster or acquired this cycle
    bootstraps: int
    provisions: int
    same_domain: str
    same_satisfiable: bool
    parked: bool
    parked_age: int  # cycles the need's class has been stuck (parking's age)
    cycles_unmet: int
    matching: MatchingSupply | None  # only when unmet
    preemption: Preemption | None  # only when Phase 2 found victims
    candidates: tuple[DomainCoverage, ...]  # co-location needs: chosen domain first


@dataclass(frozen=True, slots=True)
class Row:
    need: Need  # as its cluster reported it
    verdict: Verdict


UnmetKey = tuple[str, str, str, str]


def _unmet_key(need: Need) -> UnmetKey:
    return (need.cluster, need.group, need.fingerprint, rv.canonical(need.aggregate))


@dataclass(slots=True)
class _Cycle:
    """What one cycle decided, by reference (owned by the engine, never mutated)."""

    number: int
    reported: list[Need]  # the table's needs, in demand order
    origins: list[int] | None  # reported index -> demand index; None: the same index
    demand: list[Need]  # normalised and stamped with parking
    first: phase1.Phase1Result
    second: phase2.Phase2Result
    unresolved: dict[int, Unsatisfied]  # by id() of the demand need
    unmet_since: Mapping[UnmetKey, int]
    parking_ages: Mapping[ClassKey, int]
    candidates: Mapping[tuple[object, ...], tuple[DomainCoverage, ...]]
    # Matching supply of each unmet need's shape, counted when the cycle ran.
    matching: Mapping[SupplyKey, MatchingSupply]


class VerdictSheet:
    """The verdicts of one cycle, assembled on read and kept once assembled."""

    def __init__(self, cycle: _Cycle) -> None:
        self.cycle = cycle.number
        self.decided = self._c = cycle
        self._verdicts: dict[int, Verdict] = {}  # by demand index
        self._by_cluster: dict[str, list[int]] | None = None
        self._acquisitions: dict[int, tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self._c.reported)

    def count(self, cluster: str = "") -> int:
        return len(self._positions(cluster))

    def positions(
        self, cluster: str = "", start: int = 0, count: int | None = None
    ) -> Sequence[int]:
        """Up to `count` row positions in demand order from `start`, of one cluster or all."""
        positions = self._positions(cluster)
        first = bisect.bisect_left(positions, start)
        return positions[first : None if count is None else first + count]

    def rows(self, cluster: str = "", start: int = 0) -> Iterator[tuple[int, Row]]:
        """(position, row) in demand order from `start`, of one cluster or all."""
        for position in self.positions(cluster, start):
            yield position, self.row(position)

    def row(self, position: int) -> Row:
        origins = self._c.origins
        index = origins[position] if origins is not None else position
        return Row(self._c.reported[position], self._verdict(index))

    def _positions(self, cluster: str) -> Sequence[int]:
        if not cluster:
            return range(len(self._c.reported))
        if self._by_cluster is None:
            by_cluster: dict[str, list[int]] = {}
            for position, need in enumerate(self._c.reported):
                by_cluster.setdefault(need.cluster, []).append(position)
            self._by_cluster = by_cluster
        return self._by_cluster.get(cluster, [])

    def _verdict(self, index: int) -> Verdict:
        verdict = self._verdicts.get(index)
        if verdict is None:
            verdict = self._verdicts[index] = self._assemble(index)
        return verdict

    def _counts(self, index: int) -> tuple[int, int]:
        if self._acquisitions is None:
            counts: dict[int, tuple[int, int]] = {}
            position = {id(n): i for i, n in enumerate(self._c.demand)}
            for action in self._c.first.actions:
                if action.need is None:
                    continue
                at = position[id(action.need)]
                bootstraps, provisions = counts.get(at, (0, 0))
                if action.kind is ActionKind.BOOTSTRAP:
                    counts[at] = (bootstraps + 1, provisions)
                else:
                    counts[at] = (bootstraps, provisions + 1)
            self._acquisitions = counts
        return self._acquisitions.get(index, (0, 0))

    def _topology_bound(self, index: int, need: Need) -> bool:
        """No one Same domain can hold the gang, or strict spread's skew stopped it."""
        first = self._c.first
        if need.profile.same is not None and not first.satisfiable.get(index, False):
            return True
        return index in first.skew_bound

    def _assemble(self, index: int) -> Verdict:
        c = self._c
        need = c.demand[index]
        first = c.first
        missing = first.remaining[index]
        remaining = None if rv.is_zero(missing) else missing
        bootstraps, provisions = self._counts(index)
        preemption = c.second.preemptions.get(id(need))
        satisfied = remaining is None
        unresolved = c.unresolved.get(id(need))
        claimed = len(first.credited[index]) if first.credited else 0
        matching = None
        if satisfied:
            reason = Reason.SATISFIED
        else:
            matching = c.matching.get(_supply_key(need), NO_SUPPLY)
            # The need's own machines are part of the count but cannot be taken from
            # anyone: with nothing beyond them, no supply is left to hold back.
            beyond_own = matching.capped or matching.total > claimed
            if unresolved is None:
                reason = Reason.PREEMPTING
            elif not beyond_own:
                reason = Reason.NO_MATCHING_SUPPLY
            elif self._topology_bound(index, need):
                reason = Reason.TOPOLOGY_UNSATISFIABLE
            elif preemption is not None:
                reason = Reason.PREEMPTION_EXHAUSTED
            else:
                reason = Reason.PRIORITY_STARVED
        since = c.unmet_since.get(_unmet_key(need))
        return Verdict(
            satisfied=satisfied,
            reason=reason,
            deficit={}
            if remaining is None
            else dict(unresolved.deficit if unresolved else remaining),
            claimed=claimed,
            bootstraps=bootstraps,
            provisions=provisions,
            same_domain=first.domains.get(index, ""),
            same_satisfiable=first.satisfiable.get(index, False),
            parked=need.parked,
            parked_age=c.parking_ages.get(class_key(need), 0),
            cycles_unmet=0 if since is None else c.number - since + 1,
            matching=matching,
            preemption=preemption,
            candidates=c.candidates.get(phase1.candidates_key(need), ())
            if need.profile.same is not None
            else (),
        )


@dataclass(slots=True)
class VerdictBook:
    """Across cycles: the cycle count, when each unmet need was first unmet, the last sheet."""

    cycles: int = 0
    unmet_since: dict[UnmetKey, int] = field(default_factory=dict)
    last: VerdictSheet | None = None
    failures: int = 0  # cycles whose verdicts could not be recorded
    error: BaseException | None = None  # the last failure's, for the shard to log

    def failed(self, error: BaseException) -> None:
        """A cycle's verdicts were not recorded: nothing of it is served, the next starts
        from scratch."""
        self.failures += 1
        self.error = error
        self.last = None

    def record(
        self,
        inventory: Inventory,
        reported: list[Need],
        origins: list[int] | None,
        demand: list[Need],
        first: phase1.Phase1Result,
        second: phase2.Phase2Result,
        parking_ages: Mapping[ClassKey, int],
        candidates: Mapping[tuple[object, ...], tuple[DomainCoverage, ...]],
        changed: bool,
    ) -> None:
        """Keep this cycle's verdicts; `changed` is False when the decisions were reused."""
        self.cycles += 1
        if not changed and self.last is not None:
            # The same decisions again: only the cycle number and parking ages move.
            cycle = replace(self.last.decided, number=self.cycles, parking_ages=parking_ages)
        else:
            since = self.unmet_since
            self.unmet_since = {
                key: since.get(key, self.cycles)
                for key in (_unmet_key(u.need) for u in first.unsatisfied)
            }
            # Counted now, not when read: the inventory moves on after the cycle.
            matching: dict[SupplyKey, MatchingSupply] = {}
            for u in first.unsatisfied:
                key = _supply_key(u.need)
                if key not in matching:
                    matching[key] = matching_supply(inventory, u.need)
            cycle = _Cycle(
                number=self.cycles,
                reported=reported,
                origins=origins,
                demand=demand,
                first=first,
                second=second,
                unresolved={id(u.need): u for u in second.unresolved},
                unmet_since=self.unmet_since,
                parking_ages=parking_ages,
                # Not copied: later cycles update entries in place, so a sheet read after
                # the next cycle may show a fresher ranking, never a wrong need's.
                candidates=candidates,
                matching=matching,
            )
        self.last = VerdictSheet(cycle)
