"""`bigfleet bench engine --shape bench-hot`: the co-located hot-path fleet, settled, then timed.

The fleet (`hot_fleet`) is first settled: rounds under constant demand are
decided and applied until one decides nothing, or the bench fails. Then the
long-lived records leave the garbage collector's view, as the shard does, and
the measured cycles rotate through three small changes: one need of one
cluster grows by a unit, nothing changes, one Idle machine leaves and the
previous leaver returns. Nothing decided while measuring is applied.

Separately, a full stateless Phase 1 (fresh memo, demand normalised once) is
timed on fixed snapshots, as the reference's co-located benchmark does: the
fleet as built and the fleet as settled.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from bigfleet.bench import hot_fleet
from bigfleet.bench.engine import measure_cycles, rss_bytes
from bigfleet.bench.settle import settle
from bigfleet.shard.engine import BUILD as ENGINE_BUILD
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision import phase1, phase3
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.needs import NeedsTable
from bigfleet.shard.engine.normalize import normalize_traced
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.stats import percentiles

S = MachineState
STATELESS_RUNS = 20


@dataclass(frozen=True)
class HotResult:
    machines: int
    needs: int
    colocated_needs: int
    clusters: int
    settled_rounds: int
    cycles: int
    cycle_ms: dict[str, float]  # cycles after one need of one cluster grew by a unit
    phases_ms: dict[str, dict[str, float]]
    steady_cycle_ms: dict[str, float]  # nothing changed
    machine_change_cycle_ms: dict[str, float]  # an Idle machine left, the last leaver came back
    first_cycle_ms: float  # the cold cycle on the fleet as built
    stateless_phase1_ms: dict[str, dict[str, float]]  # "as built" and "settled" snapshots
    stateless_phase3_ms: dict[str, dict[str, float]]
    peak_rss_mb: float
    bytes_per_machine: float

    def as_json(self) -> dict[str, object]:
        return {"shape": "bench-hot", "engine_build": ENGINE_BUILD, **self.__dict__}


def _stateless(
    inv: Inventory, table: NeedsTable, reported: set[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Phase 1 from a fresh memo, and the reclaim scan, on one fixed snapshot: p50/p99 ms."""
    demand, _ = normalize_traced(inv, table.snapshot())
    first, third = [], []
    for _ in range(STATELESS_RUNS):
        mark = time.perf_counter()
        result = phase1.run(inv, demand, phase1.Phase1Memo(rank_domains=False))
        first.append(time.perf_counter() - mark)
        mark = time.perf_counter()
        phase3.reclaims(inv, result.claimed.keys(), reported)
        third.append(time.perf_counter() - mark)
    return percentiles(first, 1000), percentiles(third, 1000)


def run(
    cycles: int,
    seed: int = 1,
    settle_bound: int = 60,
    progress: Callable[[int], None] = lambda done: None,
    on_settled: Callable[[int], None] = lambda rounds: None,
) -> HotResult:
    """Raises `settle.NotSettled` when the fleet still acts after `settle_bound` rounds."""
    rng = random.Random(seed)
    gc.collect()
    before = rss_bytes()
    inv = hot_fleet.build_inventory(rng)
    gc.collect()
    per_machine = max(0, rss_bytes() - before) / max(1, len(inv))
    table = hot_fleet.build_demand(rng)
    reported = {hot_fleet.cluster_name(c) for c in range(hot_fleet.CLUSTERS)}
    gc.collect()
    gc.freeze()  # as the shard does before its first cycle (see bench.engine.run)
    stateless_built = _stateless(inv, table, reported)
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    first = engine.cycle(inv, table, reported, now=0.0).seconds["cycle"]
    engine = Engine(
        EngineSettings(rails=RailSettings(reclaim_cap_fraction=0))
    )  # settling starts from nothing known
    settled = settle(engine, inv, table, reported, settle_bound)
    on_settled(settled.rounds)
    stateless_settled = _stateless(inv, table, reported)
    gc.collect()
    gc.freeze()
    measured = measure_cycles(
        engine,
        inv,
        table,
        reported,
        [hot_fleet.cluster_name(c) for c in range(hot_fleet.CLUSTERS)],
        rng,
        cycles,
        settled.clock,
        ("cycle", "normalize", "phase1", "phase2", "phase3"),
        progress,
    )
    gc.unfreeze()
    snapshot = table.snapshot()
    return HotResult(
        machines=len(inv) + (measured.withdrawn is not None),
        needs=len(snapshot),
        colocated_needs=sum(n.profile.same is not None for n in snapshot),
        clusters=hot_fleet.CLUSTERS,
        settled_rounds=settled.rounds,
        cycles=cycles,
        cycle_ms=percentiles(measured.samples["cycle"], 1000),
        phases_ms={k: percentiles(v, 1000) for k, v in measured.samples.items() if k != "cycle"},
        steady_cycle_ms=percentiles(measured.steady, 1000),
        machine_change_cycle_ms=percentiles(measured.machine_change, 1000),
        first_cycle_ms=round(first * 1000, 3),
        stateless_phase1_ms={"as built": stateless_built[0], "settled": stateless_settled[0]},
        stateless_phase3_ms={"as built": stateless_built[1], "settled": stateless_settled[1]},
        peak_rss_mb=round(rss_bytes() / 2**20, 1),
        bytes_per_machine=round(per_machine, 1),
    )
