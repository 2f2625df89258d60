"""AvailableCapacity hints: how much of each demanded shape a cluster could get soon.

Once per cycle, for every connected cluster and every profile it demands:
matching Idle plus Speculative machines, HIGH confidence when an Idle one
matches, MEDIUM when only quota slots do, else NONE; the cost is the
cheapest matching Idle price when the profile pins instance types. A hint
goes out only when it changed, at most once per key every 5 seconds; a
reconnecting cluster gets them all again. Hints are kept for connected
clusters only.
"""

from __future__ import annotations

from bigfleet.shard import codec
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.runtime.channels import Channels
from bigfleet.wire import provider_pb2, shard_pb2

MIN_INTERVAL_S = 5.0
Confidence = shard_pb2.AvailableCapacityUpdate


def _hint(inventory: Inventory, need: Need) -> tuple[int, int, float]:
    types = need.profile.pinned_types

    def matching(state: MachineState) -> list[float]:
        pool = inventory.in_state_of_types(state, types) if types else inventory.in_state(state)
        return [m.price_per_hour for m in pool if need.profile.matches(m)]

    idle, speculative = matching(MachineState.IDLE), matching(MachineState.SPECULATIVE)
    if idle:
        confidence = Confidence.CONFIDENCE_HIGH
    elif speculative:
        confidence = Confidence.CONFIDENCE_MEDIUM
    else:
        confidence = Confidence.CONFIDENCE_NONE
    cost = min(idle) if idle and types else 0.0
    return len(idle) + len(speculative), confidence, cost


class Hints:
    def __init__(self) -> None:
        self._sent: dict[tuple[str, str], tuple[tuple[int, int, float], float]] = {}

    def emit(self, inventory: Inventory, table: NeedsTable, channels: Channels, now: float) -> int:
        """Queue the hints that changed; returns how many went out."""
        connected = set(channels.connected())
        self._sent = {k: v for k, v in self._sent.items() if k[0] in connected}
        computed: dict[str, tuple[int, int, float]] = {}  # clusters often share profiles
        sent = 0
        for cluster in sorted(connected):
            seen: set[str] = set()
            for need in table.rows(cluster):
                if need.fingerprint in seen:
                    continue
                seen.add(need.fingerprint)
                key = (cluster, need.fingerprint)
                values = computed.get(need.fingerprint)
                if values is None:
                    values = computed[need.fingerprint] = _hint(inventory, need)
                previous = self._sent.get(key)
                if previous is not None and (
                    previous[0] == values or now - previous[1] < MIN_INTERVAL_S
                ):
                    continue
                self._sent[key] = (values, now)
                count, confidence, cost = values
                wire = codec.need_to_wire(need)
                channels.get(cluster).outbox.put(
                    shard_pb2.ShardMessage(
                        available_capacity=shard_pb2.AvailableCapacityUpdate(
                            supersedes_key=f"available:{need.fingerprint}",
                            requirements=wire.requirements,
                            resources=provider_pb2.Resources(resources=wire.min_unit),
                            available_count=count,
                            confidence=confidence,  # type: ignore[arg-type]
                            cost_per_hour=cost,
                        )
                    )
                )
                sent += 1
        return sent
