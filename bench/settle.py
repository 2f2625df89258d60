"""Settling a bench fleet: rounds under constant demand, applied, until one decides nothing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from bigfleet import penalty
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.needs import NeedsTable

S = MachineState


def apply(inv: Inventory, action: Action, now: float) -> None:
    """Carry an action out at once, as if the provider answered instantly."""
    m = inv.get(action.machine_id)
    if m is None:
        return
    if action.kind in (ActionKind.BOOTSTRAP, ActionKind.PROVISION):
        assert action.need is not None
        profile = action.need.profile
        moved = replace(
            m,
            state=S.CONFIGURED,
            cluster=action.cluster,
            host=m.host or f"bench/{m.id}",
            assigned_priority=profile.priority,
            assigned_interruption_penalty=penalty.upper_bound(profile.interruption_bucket),
            assigned_need_fingerprint=profile.fingerprint,
            assigned_group=action.need.group,
        )
    elif action.kind in (ActionKind.RECLAIM, ActionKind.PREEMPT):
        moved = replace(
            m,
            state=S.IDLE,
            cluster="",
            assigned_priority=0,
            assigned_need_fingerprint="",
            assigned_group="",
        )
    else:
        moved = replace(m, state=S.SPECULATIVE, host="")
    inv.upsert(moved, now)


class NotSettled(RuntimeError):
    """The fleet still acted after the last allowed round."""


@dataclass(frozen=True)
class Settled:
    rounds: int  # rounds that acted; the round after them decided nothing
    clock: float  # the bench clock after the quiet round


def settle(
    engine: Engine, inv: Inventory, table: NeedsTable, reported: set[str], bound: int
) -> Settled:
    """Run a round, apply everything it decided at once, repeat until a round decides nothing.

    Raises NotSettled, naming what the last round still did, when `bound` rounds all acted.
    """
    now = 0.0
    acted: Counter[str] = Counter()
    for rounds in range(bound + 1):
        result = engine.cycle(inv, table, reported, now)
        now += 1
        if not result.rails.execute:
            return Settled(rounds, now)
        acted = Counter(a.kind.name.lower() for a in result.rails.execute)
        if rounds == bound:
            break
        for action in result.rails.execute:
            apply(inv, action, now)
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(acted.items()))
    raise NotSettled(
        f"the fleet did not settle under constant demand within {bound} rounds "
        f"(round {bound + 1} still decided: {what})"
    )
