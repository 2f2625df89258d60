"""The figures a run is judged by, and the verdict.

Each gate compares one figure with the profile's threshold. A figure that could
not be measured (a process not scraped, a histogram with no observation) is
recorded as -1, listed under `unmeasured`, and does not decide the verdict,
as in the reference's runner.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass

from bigfleet.scaletest.load import Census
from bigfleet.scaletest.profile import Gates
from bigfleet.scaletest.scrape import Snapshot, increase, percentile, quantile, window

UNMEASURED = -1.0
SHARD, OPERATOR, COORDINATOR = "shard", "operator-", "coordinator"
ACQUISITIONS = ("Bootstrap", "Provision")  # the action kinds that take a machine
COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    op: str  # "<=", ">=" or "=="
    passed: bool


def figures(
    start: Snapshot, end: Snapshot, census: Census, target_pods: int, soak_began: float = 0.0
) -> dict[str, float]:
    """Every figure of the run; None where it could not be measured.

    Pod binding is timed over the Pods created during the soak (churn's replacements:
    the steady state), or over every Pod when the soak made none; `soak_began` is a
    Unix time. The ramp's Pods, all created at once, time the ramp instead."""

    def soak_quantile(prefix: str, name: str, q: float) -> float | None:
        return quantile(window(end.buckets(prefix, name), start.buckets(prefix, name)), q)

    def run_quantile(prefix: str, name: str, q: float) -> float | None:
        # Start-of-soak figures plus what the soak added: a process restarted during the
        # soak lost its earlier observations, but the start snapshot kept them.
        before = start.buckets(prefix, name)
        during = window(end.buckets(prefix, name), before)
        return quantile({b: before.get(b, 0.0) + n for b, n in during.items()}, q)

    def processes(prefix: str) -> list[str]:
        return sorted({p for p in (*start.samples, *end.samples) if p.startswith(prefix)})

    def grew(prefix: str, name: str, **labels: str) -> float | None:
        """Growth during the soak, process by process (each may have restarted)."""
        found = [
            increase(end.total(p, name, **labels), start.total(p, name, **labels))
            for p in processes(prefix)
            if p in end.samples
        ]
        return sum(g for g in found if g is not None) if found else None

    def whole_run(prefix: str, name: str, **labels: str) -> float:
        """Everything counted: before the soak, plus what the soak added."""
        before = sum(start.total(p, name, **labels) or 0 for p in processes(prefix))
        return before + (grew(prefix, name, **labels) or 0)

    outcomes = "bigfleet_shard_action_execute_outcomes_total"
    attempts = sum(whole_run(SHARD, outcomes, kind=kind) for kind in ACQUISITIONS)
    successes = sum(
        whole_run(SHARD, outcomes, kind=kind, outcome="success") for kind in ACQUISITIONS
    )
    applied = whole_run(COORDINATOR, "bigfleet_coordinator_apply_total")
    apply_errors = sum(
        whole_run(COORDINATOR, "bigfleet_coordinator_apply_total", outcome=outcome)
        for outcome in ("error", "fsm_error")
    )
    coordinators = [p for p in end.samples if p.startswith(COORDINATOR)]
    in_soak = [took for created, took in census.binds if created >= soak_began]
    bind_s = in_soak or [took for _, took in census.binds]
    cycled = [
        p
        for p in end.samples
        if p.startswith(SHARD) and grew(p, "bigfleet_shard_cycle_duration_seconds_count")
    ]
    found: dict[str, float | None] = {
        "shardsReportingCycle": float(len(cycled)),
        "loadgenCRsActiveRatio": census.requests / target_pods if target_pods else None,
        "podsBoundRatio": len(census.bound) / target_pods if target_pods else None,
        "shardCycleDurationP99Seconds": soak_quantile(
            SHARD, "bigfleet_shard_cycle_duration_seconds", 0.99
        ),
        "shardConfigurePhaseP99Seconds": run_quantile(
            SHARD, "bigfleet_shard_configure_phase_seconds", 0.99
        ),
        "bootstrapSuccessRatio": successes / attempts if attempts else None,
        "shardShortfalls": end.total(SHARD, "bigfleet_shard_shortfalls"),
        "operatorRollupP99Seconds": run_quantile(
            OPERATOR, "bigfleet_operator_rollup_duration_seconds", 0.99
        ),
        "operatorAckP99Seconds": run_quantile(
            OPERATOR, "bigfleet_operator_acknowledge_duration_seconds", 0.99
        ),
        "operatorNodeStateUpdateP99Seconds": run_quantile(
            OPERATOR, "bigfleet_operator_upcoming_node_latency_seconds", 0.99
        ),
        "reclaimActionsDuringSoak": grew(SHARD, "bigfleet_shard_actions_total", kind="Reclaim"),
        "preemptActionsDuringSoak": grew(SHARD, "bigfleet_shard_actions_total", kind="Preempt"),
        "acquisitionsDuringSoak": sum(
            grew(SHARD, "bigfleet_shard_actions_total", kind=kind) or 0 for kind in ACQUISITIONS
        ),
        "shardOutboxDropsDuringSoak": grew(SHARD, "bigfleet_shard_outbox_dropped_total"),
        "endToEndPodBindP50Seconds": percentile(bind_s, 0.5),
        "endToEndPodBindP99Seconds": percentile(bind_s, 0.99),  # informational
        "endToEndPodBindSamples": float(len(bind_s)),
        "endToEndPodBindSoakOnly": float(len(bind_s) < len(census.binds)),
        # Informational: every Pod still there, the ramp's included.
        "allPodsBindP50Seconds": percentile([took for _, took in census.binds], 0.5),
        "coordinatorApplyErrorRate": apply_errors / applied if coordinators and applied else None,
        "operatorSessionReconnects": end.total(
            OPERATOR, "bigfleet_operator_session_reconnects_total"
        ),
    }
    return {k: UNMEASURED if v is None else round(v, 4) for k, v in found.items()}


def judge(gates: Gates, metrics: dict[str, float]) -> list[Gate]:
    wanted: list[tuple[str, float | None, str]] = [
        ("shardsReportingCycle", 1, ">="),  # the one shard kept cycling through the soak
        ("loadgenCRsActiveRatio", 0.999, ">="),
        ("shardShortfalls", 0, "=="),
        ("shardOutboxDropsDuringSoak", 0, "=="),
        ("shardCycleDurationP99Seconds", gates.cycle_p99_s, "<="),
        ("shardConfigurePhaseP99Seconds", gates.configure_phase_p99_s, "<="),
        ("bootstrapSuccessRatio", gates.bootstrap_success_min, ">="),
        ("operatorRollupP99Seconds", gates.rollup_p99_s, "<="),
        ("operatorAckP99Seconds", gates.ack_p99_s, "<="),
        ("operatorNodeStateUpdateP99Seconds", gates.upcoming_node_p99_s, "<="),
        ("endToEndPodBindP50Seconds", gates.bind_p50_s, "<="),
        ("reclaimActionsDuringSoak", gates.max_reclaims_during_soak, "<="),
        ("coordinatorApplyErrorRate", 0.001, "<="),  # only where a coordinator runs
    ]
    out = []
    for name, threshold, op in wanted:
        value = metrics.get(name, UNMEASURED)
        if threshold is None or value == UNMEASURED:
            continue
        passed = bool(COMPARE[op](value, threshold))
        out.append(Gate(name, value, float(threshold), op, passed))
    return out


def unmeasured(gates: Gates, metrics: dict[str, float]) -> list[str]:
    judged = {g.name for g in judge(gates, metrics)}
    return sorted(k for k, v in metrics.items() if v == UNMEASURED and k not in judged)


def as_json(gate: Gate) -> dict[str, object]:
    return asdict(gate)
