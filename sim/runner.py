"""Running scenarios: the trace (validation.md §1.5), the report, and the expectation checks.

Same scenario and seed give a byte-identical trace: every random source is
seeded, time is simulated, and everything rendered is sorted.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bigfleet import penalty, quantity
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.requirements import Operator
from bigfleet.shard import codec
from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.machine import MachineState
from bigfleet.sim.scenario import Event, NeedSpec, Requirement, Scenario, Soak
from bigfleet.sim.shard_loop import SimShard
from bigfleet.wire import capacity_pb2
from bigfleet.wire import provider_pb2 as pb

DEFAULT_SEED = 0xC0FFEE
TOWARD = {
    "Idle": pb.MACHINE_STATE_IDLE,
    "Configured": pb.MACHINE_STATE_CONFIGURED,
    "Speculative": pb.MACHINE_STATE_SPECULATIVE,
}
UNSETTLED = frozenset(
    {
        MachineState.FAILED,
        MachineState.CREATING,
        MachineState.CONFIGURING,
        MachineState.DRAINING,
        MachineState.DELETING,
    }
)


def _bucket(dollars: float | None) -> int:
    return penalty.UNSPECIFIED if dollars is None else penalty.bucket_for_dollars(dollars)


def need_to_wire(spec: NeedSpec) -> capacity_pb2.CapacityNeed:
    """A scenario need as the operator would send it (penalties bucketed here)."""
    return capacity_pb2.CapacityNeed(
        requirements=[
            capacity_pb2.NodeSelectorRequirement(
                key=r.key,
                operator=Operator(r.operator).wire,  # type: ignore[arg-type]
                values=r.values,
            )
            for r in spec.requirements
        ],
        aggregate_resources=spec.aggregate,
        min_unit=spec.min_unit,
        priority=spec.priority,
        interruption_penalty_bucket=_bucket(spec.interruption_penalty),  # type: ignore[arg-type]
        reclamation_penalty_bucket=_bucket(spec.reclamation_penalty),  # type: ignore[arg-type]
        group=spec.group,
    )


class Trace:
    """JSONL lines with the schema's fixed key order; optional keys left out when empty."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(
        self,
        kind: str,
        *,
        cluster: str = "",
        actions: list[Action] | None = None,
        state: dict[str, object] | None = None,
        notes: str = "",
    ) -> None:
        line: dict[str, object] = {"step": len(self.lines), "kind": kind}
        if cluster:
            line["cluster"] = cluster
        if actions:
            ordered = sorted(actions, key=lambda a: (a.kind.value, a.machine_id))
            line["actions"] = [
                {"kind": a.kind.value, "machine_id": a.machine_id}
                | ({"cluster": a.cluster} if a.cluster else {})
                for a in ordered
            ]
        if state is not None:
            line["state"] = state
        if notes:
            line["notes"] = notes
        self.lines.append(json.dumps(line, separators=(",", ":"), ensure_ascii=False))

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


@dataclass(frozen=True, slots=True)
class CycleCounts:
    """One cycle's counters (validation.md §2.1, step 9, as far as this loop has them; it
    models no Pods): the actions the executor took on, by kind (their sum is the churn),
    Configured machines, shortfall entries, and demand in machines (None when a need has
    no min_unit to count it by)."""

    actions: dict[str, int]  # every ActionKind, zeros included
    configured: int
    shortfalls: int
    demand: int | None
    # The closed loop's Pod counters (bound, pending, live, target, evicted, probe,
    # scattered); None in runs that model no Pods.
    pods: dict[str, int] | None = None

    @property
    def churn(self) -> int:
        return sum(self.actions.values())


def need_machines(need: NeedSpec) -> int | None:
    """How many machines a need asks for: its aggregate in min_units (the largest count
    over the min_unit's resources); None without a min_unit."""
    counts = [
        -(-quantity.to_milli(need.aggregate.get(name, "0")) // unit)
        for name, text in need.min_unit.items()
        if (unit := quantity.to_milli(text)) > 0
    ]
    return max(counts) if counts else None


class Counters:
    """Per-cycle counters of a run, fed every roll-up and every cycle."""

    def __init__(self) -> None:
        self.cycles: list[CycleCounts] = []
        self._wanted: dict[str, int | None] = {}  # cluster -> machines its roll-up asks for

    def rollup(self, event: Event) -> None:
        if not event.needs:
            self._wanted.pop(event.cluster, None)
            return
        counts = [need_machines(n) for n in event.needs]
        self._wanted[event.cluster] = (
            None if None in counts else sum(c for c in counts if c is not None)
        )

    def cycle(self, shard: SimShard) -> None:
        wanted = list(self._wanted.values())
        self.cycles.append(
            CycleCounts(
                actions={k.value: shard.tally.last_cycle[k.value] for k in ActionKind},
                configured=shard.inventory.count_by_state().get(MachineState.CONFIGURED, 0),
                shortfalls=len(shard.engine.shortfalls),
                demand=None if None in wanted else sum(w for w in wanted if w is not None),
            )
        )


@dataclass
class RunResult:
    scenario: str
    seed: int
    trace: Trace
    report: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # unmet expectations or invariants
    counters: list[CycleCounts] = field(default_factory=list)  # one per cycle run

    @property
    def ok(self) -> bool:
        return not self.problems


def _shard(scenario: Scenario, seed: int) -> SimShard:
    """The scenario's simulated shard over its seeded fake fleet."""
    config = FleetConfig(seed=seed, pools=scenario.pools, latency=scenario.latency)
    return SimShard(
        config,
        shard_id=f"sim-{scenario.name}",
        settings=scenario.engine.settings(),
        blob_dwell_s=scenario.blob_dwell_seconds,
    )


def _rollup(shard: SimShard, trace: Trace, counters: Counters, event: Event) -> None:
    message = capacity_pb2.ClusterCapacityNeeds(
        cluster_id=event.cluster,
        timestamp_unix_nanos=len(trace.lines) * 1_000_000_000,
        needs=[need_to_wire(n) for n in event.needs],
    )
    shard.rollup(message)
    counters.rollup(event)
    trace.add("rollup", cluster=event.cluster, notes=f"needs={len(event.needs)}")


def _cycle(shard: SimShard, trace: Trace, counters: Counters) -> list[Action]:
    """One cycle, traced and counted; the actions the rails let through."""
    actions = shard.cycle()
    trace.add("cycle", actions=actions, state=shard.state_summary())
    counters.cycle(shard)
    return actions


def report_of(name: str, seed: int, shard: SimShard) -> dict[str, Any]:
    """The report's common part: final state, actions, shortfalls, cost, interruptions."""
    state = shard.state_summary()
    shortfalls = [
        {
            "priority": s.profile.priority,
            "requirements": "; ".join(
                f"{r.key} {r.operator.value} {','.join(r.values)}".strip()
                for r in s.profile.requirements
            ),
            "deficit": codec.vector_to_wire(s.deficit),
            "age_cycles": s.age_cycles,
        }
        for s in shard.engine.shortfalls.report()
    ]
    return {
        "scenario": name,
        "seed": seed,
        "cycles": shard.tally.cycles,
        "final_state": state,
        "actions_by_kind": dict(sorted(shard.tally.actions.items())),
        "shortfalls": shortfalls,
        "cost_per_hour": round(shard.cost_per_hour(), 6),
        # workload interruptions: drains of Configured machines (preemptions and reclaims)
        "interruptions": shard.tally.actions["Preempt"] + shard.tally.actions["Reclaim"],
    }


def _check(scenario: Scenario, report: dict[str, Any]) -> list[str]:
    expect = scenario.expect
    state = report["final_state"]
    problems = []

    def compare(what: str, want: object, have: object) -> None:
        if want is not None and want != have:
            problems.append(f"{what}: want {want}, have {have}")

    compare("by_state", expect.by_state, state["by_state"])
    compare(
        "configured_per_cluster",
        expect.configured_per_cluster,
        state.get("configured_per_cluster", {}),
    )
    compare("shortfalls", expect.shortfalls, len(report["shortfalls"]))
    compare("actions_by_kind", expect.actions_by_kind, report["actions_by_kind"])
    if expect.shortfall_deficit is not None:
        summed: Counter[str] = Counter()
        for entry in report["shortfalls"]:
            for name, text in entry["deficit"].items():
                summed[name] += quantity.to_milli(text)
        have = {name: quantity.from_milli(v) for name, v in sorted(summed.items())}
        compare("shortfall_deficit", expect.shortfall_deficit, have)
    return problems


def run_scripted(scenario: Scenario, seed: int = DEFAULT_SEED, extra_cycles: int = 0) -> RunResult:
    with _shard(scenario, seed) as shard:
        for fault in scenario.faults:
            shard.fleet.fail_next(fault.machine, TOWARD[fault.toward], fault.error)
        trace, counters = Trace(), Counters()
        trace.add("scenario_start", state=shard.state_summary(), notes=scenario.name)
        for event in scenario.timeline:
            _rollup(shard, trace, counters, event)
            for _ in range(event.cycles):
                _cycle(shard, trace, counters)
        for _ in range(extra_cycles):
            _cycle(shard, trace, counters)
        trace.add("scenario_end", state=shard.state_summary())
        report = report_of(scenario.name, seed, shard)
    return RunResult(scenario.name, seed, trace, report, _check(scenario, report), counters.cycles)


def run_soak(
    scenario: Scenario,
    seed: int = DEFAULT_SEED,
    cycles: int | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> RunResult:
    """Seeded churn, then quiet cycles, then the closed-loop invariants of validation.md §2."""
    soak = scenario.soak
    if soak is None:
        raise ValueError(f"scenario {scenario.name} has no soak section")
    rng = random.Random(seed)
    with _shard(scenario, seed) as shard:
        return _soak(scenario, soak, seed, rng, shard, cycles, progress)


def _soak(
    scenario: Scenario,
    soak: Soak,
    seed: int,
    rng: random.Random,
    shard: SimShard,
    cycles: int | None,
    progress: Callable[[int], None],
) -> RunResult:
    seeded = len(shard.fleet)
    clusters = [f"cluster-{i:02d}" for i in range(soak.clusters)]
    demand: dict[str, int] = {}
    trace, counters = Trace(), Counters()
    trace.add("scenario_start", state=shard.state_summary(), notes=scenario.name)

    def unit_need(units: int, priority: int) -> NeedSpec:
        return NeedSpec(
            requirements=(
                Requirement(
                    key="node.kubernetes.io/instance-type",
                    operator="In",
                    values=(soak.instance_type,),
                ),
            ),
            aggregate={
                k: quantity.from_milli(quantity.to_milli(v) * units) for k, v in soak.unit.items()
            },
            min_unit=dict(soak.unit),
            priority=priority,
            interruption_penalty=8000,
            reclamation_penalty=math.inf,
        )

    churn_cycles = cycles if cycles is not None else soak.cycles
    for done in range(churn_cycles):
        if (done + 1) % soak.replace_every == 0:
            cluster = rng.choice(clusters)
            units = rng.randint(1, soak.max_units)
            demand[cluster] = units
            _rollup(
                shard,
                trace,
                counters,
                Event(cluster=cluster, needs=(unit_need(units, rng.randrange(1_000_000)),)),
            )
        if (done + 1) % soak.withdraw_every == 0:
            cluster = rng.choice(clusters)
            demand.pop(cluster, None)
            _rollup(shard, trace, counters, Event(cluster=cluster))
        _cycle(shard, trace, counters)
        progress(done + 1)
    quiet: list[int] = []
    for _ in range(soak.quiet_cycles):
        quiet.append(len(_cycle(shard, trace, counters)))
    trace.add("scenario_end", state=shard.state_summary())

    problems = []
    if len(shard.inventory) != seeded:
        problems.append(f"inventory holds {len(shard.inventory)} machines, seeded {seeded}")
    stuck = [m.id for m in shard.inventory.all() if m.state in UNSETTLED]
    if stuck:
        problems.append(f"machines left unsettled: {', '.join(stuck[:10])}")
    if sum(quiet[-soak.window :]):
        problems.append(f"not quiescent: {quiet[-soak.window :]} actions in the last cycles")
    configured = shard.inventory.configured_per_cluster()
    for cluster, count in sorted(configured.items()):
        if count > demand.get(cluster, 0):
            problems.append(f"{cluster}: {count} Configured for {demand.get(cluster, 0)} wanted")
    report = report_of(scenario.name, seed, shard)
    return RunResult(scenario.name, seed, trace, report, problems, counters.cycles)


def default_seed(scenario: Scenario) -> int:
    """The seed a run uses when none is given: the soak's own (the spec's), else ours."""
    return scenario.soak.seed if scenario.soak is not None else DEFAULT_SEED


def run(
    scenario: Scenario,
    seed: int | None = None,
    cycles: int | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> RunResult:
    """Run any scenario; for scripted ones `cycles` adds steady cycles after the timeline."""
    seed = default_seed(scenario) if seed is None else seed
    if scenario.kind == "soak":
        return run_soak(scenario, seed, cycles, progress)
    return run_scripted(scenario, seed, cycles or 0)
