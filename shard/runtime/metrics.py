"""The shard's metric catalog (components.md §10.1), prefix bigfleet_shard_, and how a
finished cycle is recorded in it.

Label values come from closed sets (kinds, states, outcomes, phases); the one
exception the catalog itself makes is `cluster` on roll-up gauges and counters, whose
series are removed when the cluster is forgotten (`forget_cluster`).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bigfleet.metrics import doubling_buckets, fine_buckets
from bigfleet.shard.engine.cycle import CycleResult
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.needs import NeedsTable
from bigfleet.shard.engine.shortfall import ShortfallLedger

log = logging.getLogger(__name__)

# Why a Session stream was refused: the closed label set of session_rejected_total.
SESSION_REFUSALS = (
    "no_hello",  # the first frame is not a Hello with a cluster id, or never came
    "invalid_cluster_id",  # the Hello's cluster id is not a DNS-1123 subdomain
    "unknown_cluster",  # outside --cluster
    "too_many_clusters",  # a new cluster beyond --max-clusters
    "conflicting_cluster",  # a Hello or roll-up for another cluster on an open stream
    "invalid_rollup",  # a roll-up that fails validation
    "oversized",  # a frame over --max-frame-bytes
    "undecodable",  # bytes that are not an OperatorMessage
    "internal",  # the shard failed handling the frame (logged with its traceback)
)


class ShardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = "bigfleet_shard_"
        r = registry
        self.cycle_duration = Histogram(
            p + "cycle_duration_seconds",
            "One decision cycle.",
            buckets=doubling_buckets(0.001, 14),
            registry=r,
        )
        self.cycle_compute = Histogram(
            p + "cycle_compute_seconds",
            "One cycle minus the wait for providers' List: the time the shard itself spends.",
            buckets=fine_buckets(0.0005, 17),  # 0.5 ms to 65 s
            registry=r,
        )
        self.cycle_phase_duration = Histogram(
            p + "cycle_phase_duration_seconds",
            "Time per cycle phase.",
            ["phase"],
            buckets=doubling_buckets(0.001, 14),
            registry=r,
        )
        self.inventory_machines = Gauge(
            p + "inventory_machines", "Machines by state.", ["state", "capacity_type"], registry=r
        )
        self.reconcile_overdue = Counter(
            p + "reconcile_overdue_total",
            "Cycles that went ahead on the inventory as last listed because their provider"
            " pass had not finished in time (a provider hanging or partitioned away).",
            registry=r,
        )
        self.demand_needs = Gauge(p + "demand_machines", "Need rows in the NeedsTable.", registry=r)
        self.shortfalls = Gauge(p + "shortfalls", "Unresolved shortfalls.", registry=r)
        self.shortfalls_aged = Gauge(
            p + "shortfalls_aged", "Shortfalls by age in cycles.", ["bucket"], registry=r
        )
        self.actions = Counter(
            p + "actions_total", "Actions sent to execution.", ["kind"], registry=r
        )
        self.action_outcomes = Counter(
            p + "action_execute_outcomes_total",
            "Executed actions by outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.actions_deferred = Counter(
            p + "actions_deferred_total", "Actions cut by the per-cycle limit.", registry=r
        )
        self.actions_dropped = Counter(
            p + "actions_dropped_total", "Actions dropped because the queue was full.", registry=r
        )
        self.actions_deduped = Counter(
            p + "actions_deduped_total",
            "Actions skipped: machine busy or no longer in position.",
            registry=r,
        )
        self.machines_transferred = Counter(
            p + "machines_transferred_total",
            "Machines handed to (out) or claimed from (in) other shards.",
            ["direction"],
            registry=r,
        )
        self.action_queue_depth = Gauge(p + "action_queue_depth", "Queued actions.", registry=r)
        self.execute_inflight = Gauge(p + "execute_inflight", "Actions executing.", registry=r)
        self.reclaims_capped = Counter(
            p + "reclaims_capped_total", "Reclaims held back by the blast-radius cap.", registry=r
        )
        self.rollup_quarantined = Gauge(
            p + "rollup_quarantined",
            "Consecutive roll-ups held by the quarantine.",
            ["cluster"],
            registry=r,
        )
        self.actions_suppressed = Counter(
            p + "actions_suppressed_total",
            "Actions held back by a pause switch.",
            ["kind"],
            registry=r,
        )
        self.actions_dryrun = Counter(
            p + "actions_dryrun_total", "Actions decided under dry-run.", ["kind"], registry=r
        )
        self.actuation_paused = Gauge(
            p + "actuation_paused", "1 while any pause switch or dry-run is on.", registry=r
        )
        self.idle_releases = Counter(
            p + "idle_releases_total", "Idle machines released to quota slots.", registry=r
        )
        self.writes_deferred = Counter(
            p + "inventory_writes_deferred_total",
            "Inventory writes that arrived while a cycle decided and were applied when it"
            " ended (a write path that did not wait for the cycle: a bug to report).",
            registry=r,
        )
        self.machines_rejected = Counter(
            p + "machines_rejected_total",
            "Provider records refused at ingest, by reason (id, state, capacity_type, quantity, "
            "structural, price, interruption_probability); the machine's last good record stays.",
            ["reason"],
            registry=r,
        )
        self.rollups_rejected = Counter(
            p + "rollups_rejected_total", "Roll-ups refused whole.", ["cluster"], registry=r
        )
        self.active_sessions = Gauge(p + "active_sessions", "Connected operators.", registry=r)
        self.session_lifecycle = Counter(
            p + "session_lifecycle_total", "Session events.", ["event"], registry=r
        )
        self.session_rejected = Counter(
            p + "session_rejected_total",
            "Session streams refused, by reason (a closed set).",
            ["reason"],
            registry=r,
        )
        for reason in SESSION_REFUSALS:
            self.session_rejected.labels(reason)
        self.clusters_known = Gauge(
            p + "clusters_known",
            "Clusters the shard holds session state for (bounded by --max-clusters).",
            registry=r,
        )
        self.clusters_forgotten = Counter(
            p + "clusters_forgotten_total",
            "Clusters whose session state and series were dropped after --cluster-retention.",
            registry=r,
        )
        self.session_identity_rejected = Counter(
            p + "session_identity_rejected_total",
            "Calls refused for the caller's certificate identity (mutual TLS only): a role "
            "the method does not take, or a Hello for another cluster than the certificate's.",
            registry=r,
        )
        self.inspect_requests = Counter(
            p + "inspect_requests_total",
            "ShardRead.InspectNeeds calls, by outcome (ok, invalid_argument, "
            "permission_denied, aborted: a page token from a cycle no longer kept, "
            "resource_exhausted: too many calls at once, deadline_exceeded: a page not "
            "taken in time).",
            ["code"],
            registry=r,
        )
        self.verdict_failures = Counter(
            p + "verdict_failures_total",
            "Cycles whose per-need verdicts could not be recorded (logged with the error); "
            "the cycle's actions went ahead, InspectNeeds served the cycle before.",
            registry=r,
        )
        self.outbox_dropped = Counter(
            p + "outbox_dropped_total", "Coalescing frames dropped by a full outbox.", registry=r
        )
        self.request_bootstrap = Histogram(
            p + "request_bootstrap_seconds",
            "Bootstrap request sent to blob received.",
            buckets=doubling_buckets(0.01, 16),
            registry=r,
        )
        self.configure_phase = Histogram(
            p + "configure_phase_seconds",
            "Configure sent to the provider's answer.",
            buckets=doubling_buckets(0.01, 16),
            registry=r,
        )
        self.drain_phase = Histogram(
            p + "drain_phase_seconds",
            "Drain sent to the provider's answer.",
            buckets=doubling_buckets(0.01, 16),
            registry=r,
        )
        self.provisioning_latency = Histogram(
            p + "provisioning_latency_seconds",
            "First sighting of demand to Configured.",
            buckets=doubling_buckets(0.01, 16),
            registry=r,
        )

    def forget_cluster(self, cluster: str) -> None:
        """Drop every series labelled with `cluster`."""
        self.rollups_rejected.remove(cluster)
        self.rollup_quarantined.remove(cluster)


def _age_bucket(age_cycles: int) -> str:
    if age_cycles < 10:
        return "1-9"
    if age_cycles < 60:
        return "10-59"
    if age_cycles < 300:
        return "60-299"
    return "300+"


def record_cycle(
    m: ShardMetrics,
    result: CycleResult,
    *,
    inventory: Inventory,
    table: NeedsTable,
    shortfalls: ShortfallLedger,
    reconcile_s: float,
    total_s: float,
) -> None:
    """Durations, rail counts, inventory, demand and shortfalls after one cycle; a warning
    names the top shortfall while any is left. Nothing here walks the machines or the
    needs: both keep their counts as they are written."""
    m.cycle_duration.observe(total_s)
    m.cycle_phase_duration.labels("reconcile").observe(reconcile_s)
    for phase in ("phase1", "phase2", "phase3"):
        m.cycle_phase_duration.labels(phase).observe(result.seconds.get(phase, 0.0))
    rails = result.rails
    for kind, n in rails.suppressed.items():
        m.actions_suppressed.labels(kind).inc(n)
    for kind, n in rails.dry_run.items():
        m.actions_dryrun.labels(kind).inc(n)
    m.reclaims_capped.inc(rails.capped)
    m.actions_deferred.inc(rails.truncated)
    m.inventory_machines.clear()
    for (state, capacity_type), n in inventory.count_by_kind().items():
        m.inventory_machines.labels(state.title, capacity_type.name.lower()).set(n)
    m.demand_needs.set(len(table))
    report = shortfalls.report()
    m.shortfalls.set(len(report))
    aged = dict.fromkeys(("1-9", "10-59", "60-299", "300+"), 0)
    for s in report:
        aged[_age_bucket(s.age_cycles)] += 1
    for bucket, n in aged.items():
        m.shortfalls_aged.labels(bucket).set(n)
    if report:
        top = report[0]
        log.warning(
            "shortfalls",
            extra={
                "count": len(report),
                "top_priority": top.profile.priority,
                "top_deficit": dict(top.deficit),
                "top_age_cycles": top.age_cycles,
            },
        )
