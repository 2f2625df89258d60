"""Settling a bench fleet: rounds under constant demand, applied, until one decides nothing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bigfleet.bench.engine import apply
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.needs import NeedsTable


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
