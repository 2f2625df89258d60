"""The Shard resource's status body: the last cycles, inventory, demand, shortfalls, sessions."""

from __future__ import annotations

from datetime import UTC, datetime

from bigfleet.shard import codec
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.runtime.service import ShardService
from bigfleet.stats import p50_p99
from bigfleet.timestamps import rfc3339

SHORTFALLS_SHOWN = 20


def shard_status(service: ShardService) -> dict[str, object]:
    """The status as of the last cycle; conditions are the publisher's to add."""
    inventory, table, ledger = service.inventory, service.state.table, service.shortfalls
    p50, p99 = p50_p99(service.cycle_seconds)
    connected = service.channels.connected()
    status: dict[str, object] = {
        "epoch": service.epoch,
        "cycle": service.cycles,
        "cycleP50Seconds": round(p50, 6),
        "cycleP99Seconds": round(p99, 6),
        "cycleP99Milliseconds": round(p99 * 1000, 1),  # what `kubectl get shards` shows
        "inventory": {
            "total": len(inventory),
            **{
                s.name.lower(): n
                for s, n in inventory.count_by_state().items()
                if s != MachineState.UNSPECIFIED
            },
        },
        "demand": {"needs": len(table), "clusters": len(table.clusters())},
        "shortfallCount": len(ledger),
        "shortfalls": [
            {
                "cluster": "",
                "priority": s.profile.priority,
                "ageCycles": s.age_cycles,
                "requirements": ", ".join(
                    f"{r.key} {r.operator.value} {','.join(r.values)}".strip()
                    for r in s.profile.requirements
                ),
                "deficit": codec.vector_to_wire(s.deficit),
            }
            for s in ledger.report(limit=SHORTFALLS_SHOWN)
        ],
        "connectedClusters": connected,
        "connectedClusterCount": len(connected),
    }
    if service.last_cycle_at is not None:
        status["lastCycleTime"] = rfc3339(datetime.fromtimestamp(service.last_cycle_at, UTC))
    return status
