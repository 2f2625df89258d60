"""`bigfleet bench engine`: decision-cycle timings on a synthetic fleet at scale.

The shape follows the reference's co-located benchmark: every cluster has
Configured machines of a few instance types spread over racks; the shard also
holds Idle machines and Speculative slots; a fraction of the needs are
co-location gangs pinned to one rack (Same), the rest plain demand. Demand
roughly matches bound supply; the decided actions are applied at once until
a round decides nothing (`settle`: the steady regime; the bench fails when
the fleet does not settle). Measured cycles then rotate through
three kinds: one after a cluster's roll-up changed (one need grew by a
unit), one with nothing changed (decisions reused), and one after an Idle
machine left the fleet and the previous leaver came back (acquirable supply
moved, so every co-location need that could use those machine types weighs
its domains again).
"""

from __future__ import annotations

import gc
import random
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bigfleet import penalty
from bigfleet.bench.settle import settle
from bigfleet.shard.engine import BUILD as ENGINE_BUILD
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import INSTANCE_TYPE_KEY, CapacityType, Machine, MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.profile import Operator, Profile, Requirement
from bigfleet.shard.engine.resources import add
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.stats import percentiles

S = MachineState
RACK_KEY = "topology.bigfleet/rack"
# (instance type, cpu milli, memory bytes*1000, gpus milli)
CATALOG = (
    ("m6i.large", 2_000, 8 * 2**30 * 1000, 0),
    ("m6i.2xlarge", 8_000, 32 * 2**30 * 1000, 0),
    ("r6i.4xlarge", 16_000, 128 * 2**30 * 1000, 0),
    ("c6i.8xlarge", 32_000, 64 * 2**30 * 1000, 0),
    ("g5.12xlarge", 48_000, 192 * 2**30 * 1000, 4_000),
    ("a3-highgpu-8g", 208_000, 1872 * 2**30 * 1000, 8_000),
)
RACKS_PER_TYPE = 12


@dataclass(frozen=True)
class BenchResult:
    machines: int
    needs: int
    clusters: int
    colocated: float
    cycles: int
    settled_rounds: int  # rounds that acted before one decided nothing
    cycle_ms: dict[str, float]  # cycles after one cluster's roll-up changed
    phases_ms: dict[str, dict[str, float]]
    steady_cycle_ms: dict[str, float]  # cycles with nothing changed
    machine_change_cycle_ms: dict[str, float]  # cycles after Idle machines left and came back
    first_cycle_ms: float
    peak_rss_mb: float
    bytes_per_machine: float
    verdicts: bool = True  # the engine kept per-need verdicts
    # One cluster's verdicts read after each roll-up change, as an operator's poll does.
    verdict_read_ms: dict[str, float] | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "engine_build": ENGINE_BUILD,  # compiled or python (ADR 0023)
            "machines": self.machines,
            "needs": self.needs,
            "clusters": self.clusters,
            "colocated": self.colocated,
            "cycles": self.cycles,
            "settled_rounds": self.settled_rounds,
            "cycle_ms": self.cycle_ms,
            "phases_ms": self.phases_ms,
            "steady_cycle_ms": self.steady_cycle_ms,
            "machine_change_cycle_ms": self.machine_change_cycle_ms,
            "first_cycle_ms": self.first_cycle_ms,
            "peak_rss_mb": self.peak_rss_mb,
            "bytes_per_machine": self.bytes_per_machine,
            "verdicts": self.verdicts,
            "verdict_read_ms": self.verdict_read_ms,
        }


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _resources(itype: int) -> dict[str, int]:
    _, cpu, memory, gpu = CATALOG[itype]
    out = {"cpu": cpu, "memory": memory}
    if gpu:
        out["nvidia.com/gpu"] = gpu
    return out


def build_inventory(machines: int, clusters: int, rng: random.Random) -> Inventory:
    """80 % Configured across clusters, 5 % Idle, 15 % Speculative."""
    inv = Inventory()
    for i in range(machines):
        itype = rng.randrange(len(CATALOG))
        roll = i % 20
        state = S.SPECULATIVE if roll < 3 else S.IDLE if roll < 4 else S.CONFIGURED
        cluster = f"cluster-{i % clusters:03d}" if state == S.CONFIGURED else ""
        inv.upsert(
            Machine(
                id=f"m-{i:07d}",
                state=state,
                host="" if state == S.SPECULATIVE else f"bench/h-{i}",
                cluster=cluster,
                instance_type=CATALOG[itype][0],
                zone=f"zone-{i % 3}",
                capacity_type=CapacityType.ON_DEMAND,
                resources=_resources(itype),
                labels={RACK_KEY: f"{CATALOG[itype][0]}-r{rng.randrange(RACKS_PER_TYPE)}"},
                price_per_hour=round(0.1 + itype * 0.7, 2),
                interruption_probability=0.0 if state != S.SPECULATIVE else 0.05,
                assigned_priority=rng.choice((100, 1_000, 100_000)) if cluster else 0,
            ),
            now=0.0,
        )
    return inv


def build_demand(
    inv: Inventory, needs: int, clusters: int, colocated: float, rng: random.Random
) -> NeedsTable:
    """Per cluster, needs sized so their total roughly matches the cluster's bound supply."""
    table = NeedsTable()
    per_cluster = max(1, needs // clusters)
    for c in range(clusters):
        cluster = f"cluster-{c:03d}"
        bound_of_type = Counter(m.instance_type for m in inv.keep_order(cluster, S.CONFIGURED))
        rows = []
        for n in range(per_cluster):
            itype = rng.randrange(len(CATALOG))
            unit = _resources(itype)
            share = bound_of_type[CATALOG[itype][0]]
            units = max(1, share // max(1, per_cluster // len(CATALOG)))
            requirements = [Requirement(INSTANCE_TYPE_KEY, Operator.IN, (CATALOG[itype][0],))]
            group = ""
            if rng.random() < colocated:
                requirements.append(Requirement(RACK_KEY, Operator.SAME))
                group = f"{cluster}-gang-{n}"
                units = rng.randint(4, 8)
            profile = Profile(
                tuple(requirements),
                (),
                rng.choice((100, 1_000, 100_000)),
                penalty.bucket_for_dollars(rng.choice((1, 64, 8000))),
                penalty.PINNED,
            )
            rows.append(
                Need(
                    cluster=cluster,
                    profile=profile,
                    aggregate={k: v * units for k, v in unit.items()},
                    min_unit=unit,
                    group=group,
                    arrival=n,
                )
            )
        table.replace(cluster, rows)
    return table


@dataclass
class Measured:
    samples: dict[str, list[float]]  # per timing key, after a roll-up change
    steady: list[float] = field(default_factory=list)  # nothing changed
    machine_change: list[float] = field(default_factory=list)  # an Idle machine moved
    reads: list[float] = field(default_factory=list)  # reading one cluster's verdicts
    withdrawn: Machine | None = None  # the machine out of the fleet at the end


def measure_cycles(
    engine: Engine,
    inv: Inventory,
    table: NeedsTable,
    reported: set[str],
    clusters: list[str],
    rng: random.Random,
    cycles: int,
    start: float,
    keys: tuple[str, ...],
    progress: Callable[[int], None],
) -> Measured:
    """Steady cycles after small changes, three per round: one cluster's roll-up grows a
    need by a unit (one more pod); nothing changes; one Idle machine leaves the fleet
    (the provider withdrew it) and the one that left the round before comes back."""
    out = Measured({k: [] for k in keys})
    for done in range(cycles):
        now = start + 3 * done
        cluster = clusters[done % len(clusters)]
        rows = list(table.rows(cluster))
        at = rng.randrange(len(rows))
        rows[at] = replace(rows[at], aggregate=add(rows[at].aggregate, rows[at].min_unit))
        table.replace(cluster, rows)
        result = engine.cycle(inv, table, reported, now=now + 1)
        for key in keys:
            out.samples[key].append(result.seconds[key])
        if engine.verdicts is not None and engine.verdicts.last is not None:
            mark = time.perf_counter()
            for _ in engine.verdicts.last.rows(cluster):
                pass
            out.reads.append(time.perf_counter() - mark)
        out.steady.append(engine.cycle(inv, table, reported, now=now + 2).seconds["cycle"])
        idle = inv.in_state(S.IDLE)
        if idle:
            leaving = idle[rng.randrange(len(idle))]
            inv.remove(leaving.id)
            if out.withdrawn is not None:
                inv.upsert(out.withdrawn, now + 3)
            out.withdrawn = leaving
            out.machine_change.append(
                engine.cycle(inv, table, reported, now=now + 3).seconds["cycle"]
            )
        progress(done + 1)
    return out


def run(
    machines: int,
    needs: int,
    clusters: int,
    colocated: float,
    cycles: int,
    seed: int = 1,
    progress: Callable[[int], None] = lambda done: None,
    verdicts: bool = True,
    settle_bound: int = 60,
    on_settled: Callable[[int], None] = lambda rounds: None,
) -> BenchResult:
    """Raises `settle.NotSettled` when the fleet still acts after `settle_bound` rounds."""
    rng = random.Random(seed)
    gc.collect()
    before = rss_bytes()
    inv = build_inventory(machines, clusters, rng)
    gc.collect()
    per_machine = max(0, rss_bytes() - before) / max(1, machines)
    table = build_demand(inv, needs, clusters, colocated, rng)
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)), verdicts=verdicts)
    reported = {f"cluster-{c:03d}" for c in range(clusters)}
    # As the shard does once its inventory is loaded, before its first cycle: the
    # long-lived records leave the collector's view, so a full collection does not walk
    # every machine. Again after converging, for what the rounds built.
    gc.collect()
    gc.freeze()
    first = engine.cycle(inv, table, reported, now=0.0).seconds["cycle"]
    settled = settle(engine, inv, table, reported, settle_bound)
    on_settled(settled.rounds)
    gc.collect()
    gc.freeze()
    measured = measure_cycles(
        engine,
        inv,
        table,
        reported,
        [f"cluster-{c:03d}" for c in range(clusters)],
        rng,
        cycles,
        settled.clock,
        ("cycle", "phase1", "phase2", "phase3"),
        progress,
    )
    gc.unfreeze()
    return BenchResult(
        machines=machines,
        needs=len(table.snapshot()),
        clusters=clusters,
        colocated=colocated,
        cycles=cycles,
        settled_rounds=settled.rounds,
        cycle_ms=percentiles(measured.samples["cycle"], 1000),
        phases_ms={k: percentiles(v, 1000) for k, v in measured.samples.items() if k != "cycle"},
        steady_cycle_ms=percentiles(measured.steady, 1000),
        machine_change_cycle_ms=percentiles(measured.machine_change, 1000),
        first_cycle_ms=round(first * 1000, 3),
        peak_rss_mb=round(rss_bytes() / 2**20, 1),
        bytes_per_machine=round(per_machine, 1),
        verdicts=verdicts,
        verdict_read_ms=percentiles(measured.reads, 1000) if measured.reads else None,
    )
