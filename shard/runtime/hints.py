"""AvailableCapacity hints: how much of each demanded shape a cluster could get soon.

Once per cycle, for every connected cluster and every profile it demands: Idle
plus Speculative machines that fit, by the engine's own predicate (`fits`:
labels, zone, pinned types, and room for the unit); the unit is the largest
`min_unit` of the cluster's needs of that profile, so a count never promises a
machine too small for one of its requests. HIGH confidence when an Idle one
fits, MEDIUM when only quota slots do, else NONE (count 0); the cost is the
cheapest fitting Idle price when the profile pins instance types. A hint goes
out only when it changed, at most once per key every 5 seconds; a reconnecting
cluster gets them all again. Hints are kept for connected clusters only.

The predicate reads only what a machine's signature holds, so each profile is
tested once per signature the inventory indexes (`Inventory.shapes`, with its
count), and the cost walks the price-ordered Idle pool only to the first
machine that fits: a cycle's hints cost profiles x kinds of machine, not
profiles x machines.
"""

from __future__ import annotations

from dataclasses import replace

from bigfleet.shard import codec
from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable, fits
from bigfleet.shard.runtime.channels import Channels
from bigfleet.wire import provider_pb2, shard_pb2

MIN_INTERVAL_S = 5.0
Confidence = shard_pb2.AvailableCapacityUpdate


def _hint(inventory: Inventory, need: Need) -> tuple[int, int, float]:
    types = need.profile.pinned_types

    def fitting(state: MachineState) -> int:
        return sum(
            count
            for count, sample in inventory.shapes(state)
            if (not types or sample.instance_type in types) and fits(need, sample)
        )

    idle, speculative = fitting(MachineState.IDLE), fitting(MachineState.SPECULATIVE)
    if idle:
        confidence = Confidence.CONFIDENCE_HIGH
    elif speculative:
        confidence = Confidence.CONFIDENCE_MEDIUM
    else:
        confidence = Confidence.CONFIDENCE_NONE
    cost = 0.0
    if idle and types:  # the cheapest fitting Idle machine: the pool is price ascending
        pool = inventory.in_state_of_types(MachineState.IDLE, types)
        cost = next(m.price_per_hour for m in pool if fits(need, m))
    return idle + speculative, confidence, cost


def _shapes(needs: tuple[Need, ...]) -> dict[str, Need]:
    """One need per profile, its unit the per-resource maximum of the profile's units."""
    shapes: dict[str, Need] = {}
    for need in needs:
        seen = shapes.get(need.fingerprint)
        if seen is None:
            shapes[need.fingerprint] = need
        elif not rv.covers(seen.min_unit, need.min_unit):
            unit = dict(seen.min_unit)
            for name, amount in need.min_unit.items():
                unit[name] = max(unit.get(name, 0), amount)
            shapes[need.fingerprint] = replace(seen, min_unit=unit)
    return shapes


class Hints:
    def __init__(self) -> None:
        self._sent: dict[tuple[str, str], tuple[tuple[int, int, float], float]] = {}

    def emit(self, inventory: Inventory, table: NeedsTable, channels: Channels, now: float) -> int:
        """Queue the hints that changed; returns how many went out."""
        connected = set(channels.connected())
        self._sent = {k: v for k, v in self._sent.items() if k[0] in connected}
        # Clusters often share profiles and units.
        computed: dict[tuple[str, str], tuple[int, int, float]] = {}
        sent = 0
        for cluster in sorted(connected):
            for fingerprint, need in _shapes(table.rows(cluster)).items():
                key = (cluster, fingerprint)
                shape = (fingerprint, rv.canonical(need.min_unit))
                values = computed.get(shape)
                if values is None:
                    values = computed[shape] = _hint(inventory, need)
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
