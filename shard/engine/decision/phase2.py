"""Phase 2: resolve priority inversions by preempting strictly lower-priority machines.

Victims come from one scored pool per (profile fingerprint, preemptor
priority), built once per cycle and shared by every need with that key, and
walked from the head: no need scans every machine. A pool is not even built
when no Configured machine of the candidate types has a lower priority. The
victim drains to Idle; the next cycle's Phase 1 acquires it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.decision.actions import Action, ActionKind, Preemption, Unsatisfied
from bigfleet.shard.engine.decision.cost import drain_grace_seconds, victim_score
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import Machine, MachineState
from bigfleet.shard.engine.needs import Need, credit
from bigfleet.shard.engine.settings import EngineSettings

S = MachineState


@dataclass(frozen=True, slots=True)
class Phase2Result:
    actions: list[Action]
    unresolved: list[Unsatisfied]
    # By the identity of the need (an object of this cycle's demand), for verdicts.
    preemptions: dict[int, Preemption] = field(default_factory=dict)


@dataclass(slots=True)
class Phase2Memo:
    """What Phase 2 keeps for the next cycle: per pinned instance types, the lowest
    priority among Configured machines, with the stamp of those machines (it took a
    walk over every one of them, a tenth of a cycle that changed elsewhere)."""

    # pinned types -> (stamp, lowest priority or None)
    floors: dict[tuple[str, ...], tuple[Any, ...]] = field(default_factory=dict)


class _VictimPools:
    def __init__(self, inventory: Inventory, settings: EngineSettings, memo: Phase2Memo) -> None:
        self.inv = inventory
        self._drain_s = settings.drain_estimate_s
        self._weights = settings.victim_weights
        self._pools: dict[tuple[str, int], list[Machine]] = {}
        self._floor: dict[tuple[str, ...], int | None] = {}
        self._memo = memo

    def _candidates(self, need: Need) -> list[Machine]:
        types = need.profile.pinned_types
        if types:
            return self.inv.in_state_of_types(S.CONFIGURED, types)
        return self.inv.in_state(S.CONFIGURED)

    def _lowest_priority(self, need: Need) -> int | None:
        key = need.profile.pinned_types
        if key not in self._floor:
            stamp = self.inv.acquirable_stamp(S.CONFIGURED, key)
            kept = self._memo.floors.get(key)
            if kept is not None and kept[0] == stamp:
                floor: int | None = kept[1]
            else:
                floor = min((m.assigned_priority for m in self._candidates(need)), default=None)
                self._memo.floors[key] = (stamp, floor)
            self._floor[key] = floor
        return self._floor[key]

    def pool(self, need: Need) -> list[Machine]:
        key = (need.fingerprint, need.priority)
        pool = self._pools.get(key)
        if pool is None:
            floor = self._lowest_priority(need)
            if floor is None or floor >= need.priority:
                pool = []
            else:
                victims = [
                    m
                    for m in self._candidates(need)
                    if m.assigned_priority < need.priority and need.profile.matches(m)
                ]
                victims.sort(
                    key=lambda m: (
                        -victim_score(need.priority, m, self._drain_s, self._weights),
                        m.id,
                    )
                )
                pool = victims
            self._pools[key] = pool
        return pool


_DEFAULTS = EngineSettings()


def run(
    inventory: Inventory,
    unsatisfied: list[Unsatisfied],
    settings: EngineSettings = _DEFAULTS,
    memo: Phase2Memo | None = None,
) -> Phase2Result:
    pools = _VictimPools(inventory, settings, memo if memo is not None else Phase2Memo())
    taken: set[str] = set()
    actions: list[Action] = []
    unresolved: list[Unsatisfied] = []
    preemptions: dict[int, Preemption] = {}
    for u in sorted(unsatisfied, key=lambda u: -u.need.priority):
        need = u.need
        same = need.profile.same
        if need.parked or (same is not None and not u.same_domain):
            unresolved.append(u)
            continue
        remaining = dict(u.deficit)
        picks: list[Machine] = []
        for victim in pools.pool(need):
            if rv.is_zero(remaining):
                break
            if victim.id in taken or not rv.covers(victim.alloc, need.min_unit):
                continue
            if same is not None and victim.attribute(same.key) != u.same_domain:
                continue
            picks.append(victim)
            taken.add(victim.id)
            remaining = rv.sub(remaining, credit(need, victim))
        if picks:
            freed: dict[str, int] = {}
            for victim in picks:
                rv.add_scaled(freed, victim.alloc, 1)
            preemptions[id(need)] = Preemption(len(picks), freed)
        for victim in picks:
            actions.append(
                Action(
                    kind=ActionKind.PREEMPT,
                    machine_id=victim.id,
                    cluster=victim.cluster,
                    reason="phase2.inversion",
                    grace_seconds=drain_grace_seconds(need.priority, victim.assigned_priority),
                    preemptor_priority=need.priority,
                )
            )
        if not rv.is_zero(remaining):
            unresolved.append(replace(u, deficit=remaining, preempted=bool(picks)))
    return Phase2Result(actions, unresolved, preemptions)
