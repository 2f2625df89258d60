"""The operator's metric catalog (components.md §10.1), prefix bigfleet_operator_."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bigfleet.metrics import doubling_buckets

UPCOMING_NODE_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p, r = "bigfleet_operator_", registry
        self.leader = Gauge(
            p + "leader",
            "1 while this replica leads (works); 0 while it stands by for the Lease.",
            registry=r,
        )
        self.rollup_duration = Histogram(
            p + "rollup_duration_seconds",
            "Building one roll-up (acknowledgements excluded).",
            buckets=doubling_buckets(0.001, 16),
            registry=r,
        )
        self.acknowledge_duration = Histogram(
            p + "acknowledge_duration_seconds",
            "Acknowledging the CRs of one roll-up.",
            buckets=doubling_buckets(0.01, 16),
            registry=r,
        )
        self.acknowledged = Counter(
            p + "acknowledged_total", "CRs marked Acknowledged.", registry=r
        )
        self.acknowledge_failures = Counter(
            p + "acknowledge_failures_total",
            "CRs whose acknowledgement failed after its retries (left Pending for a later "
            "roll-up).",
            registry=r,
        )
        self.reconnects = Counter(p + "session_reconnects_total", "Streams redialled.", registry=r)
        self.untranslatable = Counter(
            p + "untranslatable_total", "CRs left out of a roll-up.", registry=r
        )
        self.upcoming_node_writes = Counter(
            p + "upcoming_node_writes_total", "UpcomingNode writes.", ["outcome"], registry=r
        )
        self.upcoming_node_latency = Histogram(
            p + "upcoming_node_latency_seconds",
            "From a NodeStateUpdate's arrival to its UpcomingNode written (a burst that"
            " collapses into its newest update is timed from the newest one's arrival).",
            # Fine around the reference's gates (1.5 s release, 5 s dev), so a p99 read
            # from the buckets is not an artefact of one wide bucket spanning the gate.
            buckets=UPCOMING_NODE_BUCKETS,
            registry=r,
        )
        self.satisfied_condition_writes = Counter(
            p + "satisfied_condition_writes_total",
            "Satisfied conditions written on CapacityRequests, by status and reason.",
            ["status", "reason"],
            registry=r,
        )
        self.verdict_poll_failures = Counter(
            p + "verdict_poll_failures_total",
            "Reads of the shard's verdicts (ShardRead.InspectNeeds) that failed, by gRPC code.",
            ["code"],
            registry=r,
        )
        self.dispatch_inflight = Gauge(
            p + "dispatch_inflight", "Frames from the shard being handled.", registry=r
        )
