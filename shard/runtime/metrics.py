"""The shard's metric catalog (components.md §10.1), prefix bigfleet_shard_.

Label values come from closed sets (kinds, states, outcomes, phases); the one
exception the catalog itself makes is `cluster` on roll-up gauges and counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bigfleet.metrics import doubling_buckets, fine_buckets


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
        self.machines_rejected = Counter(
            p + "machines_rejected_total",
            "Provider records refused at ingest.",
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
            p + "session_rejected_total", "Streams closed for a bad frame.", ["reason"], registry=r
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
