"""The closed loop's cycle (validation.md §2.1, steps 1-9), on the simulated shard.

Per cycle, in order:
 1. machines whose dwell ended mature: the fake fleet completes Creating and
    Configuring on the simulated clock, and the shard's reconcile at the start
    of its cycle reads the result;
 2. scheduled rescales;
 3. scheduled incumbent losses (the cluster's lowest-id Configured machines
    vanish from the provider);
 4. every cluster rolls up its Pods through the operator's roll-up;
 5. one real decision cycle, carried out by the shard's executor (`SimShard`);
 6. the dwell of machines just bootstrapped or provisioned starts (the fake's
    latencies, begun by the executor's calls in step 5);
 7. Pods of machines no longer Configured for their cluster are evicted;
 8. pending Pods bind;
 9. counters are recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bigfleet import stats
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.shard.engine.decision.actions import ActionKind
from bigfleet.shard.engine.machine import Machine, MachineState
from bigfleet.shard.engine.needs import fits
from bigfleet.sim.closedloop import expect, seed
from bigfleet.sim.closedloop.cluster import ClusterModel
from bigfleet.sim.closedloop.spec import ClosedLoopScenario
from bigfleet.sim.runner import CycleCounts, RunResult, Trace, report_of
from bigfleet.sim.shard_loop import SimShard

STAMP_BASE_NS = 1_800_000_000 * 1_000_000_000  # roll-up stamps: the simulated epoch


def _configured(shard: SimShard) -> dict[str, dict[str, Machine]]:
    """Cluster -> its Configured machines by id, as the shard's inventory holds them."""
    out: dict[str, dict[str, Machine]] = {}
    for m in shard.inventory.in_state(MachineState.CONFIGURED):
        out.setdefault(m.cluster, {})[m.id] = m
    return out


def _probe(shard: SimShard) -> int:
    """Reclaims this cycle of machines that match a need of their own cluster the cycle left
    unsatisfied: capacity taken from a cluster that still wants it."""
    result = shard.last
    if result is None:
        return 0
    unresolved = result.phase2.unresolved
    count = 0
    for action in result.rails.execute:
        if action.kind is not ActionKind.RECLAIM:
            continue
        machine = shard.inventory.get(action.machine_id)
        if machine is None:
            continue
        if any(u.need.cluster == action.cluster and fits(u.need, machine) for u in unresolved):
            count += 1
    return count


def run(
    scenario: ClosedLoopScenario,
    seed_value: int | None = None,
    cycles: int | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> RunResult:
    """Run the scenario's closed loop for `cycles` (default: the scenario's) and check its
    pass conditions."""
    chosen_seed = scenario.seed if seed_value is None else seed_value
    total = scenario.cycles if cycles is None else cycles
    config = FleetConfig(seed=chosen_seed, latency=scenario.latency)
    with SimShard(
        config,
        shard_id=f"sim-{scenario.name}",
        settings=scenario.engine.settings(),
        blob_dwell_s=scenario.blob_dwell_seconds,
    ) as shard:
        seed.seed(scenario, shard.fleet)
        clusters = {
            name: ClusterModel(name, spec.workloads, scenario.shapes)
            for spec in scenario.clusters
            for name in spec.names()
        }
        trace = Trace()
        trace.add("scenario_start", state=shard.state_summary(), notes=scenario.name)
        counts: list[CycleCounts] = []
        decision_s: list[float] = []
        step_s: list[float] = []
        last_needs: dict[str, bytes] = {}
        for cycle in range(1, total + 1):
            # (1) happens inside the shard's cycle: its first reconcile reads what matured.
            for r in scenario.rescales:  # (2)
                if r.cycle == cycle:
                    clusters[r.cluster].rescale(r.workload, r.replicas)
            for loss in scenario.losses:  # (3)
                if loss.cycle == cycle:
                    held = sorted(_configured(shard).get(loss.cluster, {}))
                    for machine_id in held[: loss.count]:
                        shard.fleet.remove_machine(machine_id)
                    shard.reconciler.full_next = True  # the provider reports the removal
            names = list(clusters)
            for i, (name, model) in enumerate(clusters.items()):  # (4)
                turn = (i + cycle) % len(names) if scenario.rotate_arrivals else 0
                message = model.rollup(STAMP_BASE_NS + turn * 1_000_000_000, scenario.cr_per_pod)
                shard.rollup(message)
                body = b"".join(n.SerializeToString(deterministic=True) for n in message.needs)
                if last_needs.get(name) != body:
                    last_needs[name] = body
                    trace.add("rollup", cluster=name, notes=f"needs={len(message.needs)}")
            started = time.perf_counter()
            actions = shard.cycle()  # (5), and (6): the executor's calls start the dwell
            step_s.append(time.perf_counter() - started)
            if shard.last is not None:
                decision_s.append(shard.last.seconds.get("cycle", 0.0))
            configured = _configured(shard)
            evicted = sum(m.evict(configured.get(n, {})) for n, m in clusters.items())  # (7)
            for name, model in clusters.items():  # (8)
                model.bind(configured.get(name, {}))
            pods = _pod_counts(clusters, configured)  # (9)
            pods["evicted"] = evicted
            pods["probe"] = _probe(shard)
            counts.append(
                CycleCounts(
                    actions={k.value: shard.tally.last_cycle[k.value] for k in ActionKind},
                    configured=shard.inventory.count_by_state().get(MachineState.CONFIGURED, 0),
                    shortfalls=len(shard.engine.shortfalls),
                    demand=sum(m.demand_machines() for m in clusters.values()),
                    pods=pods,
                )
            )
            notes = " ".join(f"{k}={v}" for k, v in pods.items())
            trace.add("cycle", actions=actions, state=shard.state_summary(), notes=notes)
            progress(cycle)
        trace.add("scenario_end", state=shard.state_summary())
        report = report_of(scenario.name, chosen_seed, shard)
        report["pods"] = _pod_report(clusters)
        report["configured_by_tier"] = _by_tier(shard)
    report["cycle_time_ms"] = {
        "decision": stats.percentiles(decision_s, scale=1000),
        "whole_cycle": stats.percentiles(step_s, scale=1000),
    }
    conditions, problems = expect.check(scenario.expect, counts, report)
    report["conditions"] = conditions
    return RunResult(scenario.name, chosen_seed, trace, report, problems, counts)


def _pod_counts(
    clusters: dict[str, ClusterModel], configured: dict[str, dict[str, Machine]]
) -> dict[str, int]:
    bound = pending = target = scattered = 0
    for name, model in clusters.items():
        for pod in model.pods():
            if pod.machine:
                bound += 1
            else:
                pending += 1
        target += model.target()
        scattered += model.scattered(configured.get(name, {}))
    return {
        "bound": bound,
        "pending": pending,
        "live": bound + pending,
        "target": target,
        "scattered": scattered,
    }


def _pod_report(clusters: dict[str, ClusterModel]) -> dict[str, Any]:
    by_workload: dict[str, int] = {}
    live = bound = target = evicted = 0
    for model in clusters.values():
        target += model.target()
        evicted += model.evicted_total
        for pod in model.pods():
            live += 1
            if pod.machine:
                bound += 1
                by_workload[pod.obj.workload] = by_workload.get(pod.obj.workload, 0) + 1
            else:
                by_workload.setdefault(pod.obj.workload, 0)
    return {
        "target": target,
        "live": live,
        "bound": bound,
        "pending": live - bound,
        "evicted": evicted,
        "bound_per_workload": dict(sorted(by_workload.items())),
    }


def _by_tier(shard: SimShard) -> dict[str, int]:
    tiers = dict.fromkeys(seed.TIERS, 0)
    for m in shard.inventory.in_state(MachineState.CONFIGURED):
        tiers[seed.tier_of(m.id)] = tiers.get(seed.tier_of(m.id), 0) + 1
    return tiers
