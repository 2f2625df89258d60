"""The coordinator's metric catalog, served on its metrics port (8790)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CoordinatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Named "raft" for dashboard compatibility; the value is the etcd-derived term.
        self.term = Gauge(
            "bigfleet_coordinator_raft_term",
            "Term of the leadership this replica holds (0 while following).",
            registry=registry,
        )
        self.apply = Counter(
            "bigfleet_coordinator_apply_total",
            "Leader writes by outcome: success, error (etcd or not leader), "
            "fsm_error (a table rule refused it).",
            ["outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "bigfleet_coordinator_pending_instructions",
            "Instructions owed to a shard: sent on every reply until it acknowledges them.",
            ["shard"],
            registry=registry,
        )
        self.rebalance_moves = Counter(
            "bigfleet_coordinator_rebalance_moves_total",
            "Machine moves between shards completed, by tier (idle, speculative, drain).",
            ["tier"],
            registry=registry,
        )
        self.rebalance_seconds = Histogram(
            "bigfleet_coordinator_rebalance_seconds",
            "From the report that made a shortfall eligible to the recipient's claim.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.identity_rejected = Counter(
            "bigfleet_coordinator_identity_rejected_total",
            "Calls refused because the caller's certificate identity may not make them "
            "(mutual TLS only), by RPC.",
            ["rpc"],
            registry=registry,
        )
