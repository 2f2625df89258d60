"""Seed machines of a closed-loop scenario into the fake fleet (validation.md §2.1, "Seeding").

Per pool, in this order: Configured machines per cluster (bare metal, price 0,
carrying the shape's priority and penalties as if the shard had bootstrapped
them), shard-wide Idle (bare metal, price 0; or an elastic on-demand tier),
Speculative on-demand, and an optional cheaper, riskier Speculative tier.
Each machine holds `density` Pods of its shape; the pool's machines spread over
racks round-robin or in contiguous blocks, and racks over zones.
"""

from __future__ import annotations

from dataclasses import dataclass

from bigfleet import quantity
from bigfleet.providers_fake.config import CAPACITY_TYPE_LABEL, CAPACITY_TYPES
from bigfleet.providers_fake.fleet import FakeFleet, Slot
from bigfleet.shard import codec
from bigfleet.sim.closedloop.spec import RACK_KEY, ClosedLoopScenario, SeedPool, Shape
from bigfleet.wire import provider_pb2 as pb

TIERS = ("configured", "idle", "spec", "cheap")


@dataclass(frozen=True, slots=True)
class Seed:
    id: str
    tier: str
    cluster: str = ""


def machine_id(shape: str, tier: str, index: int) -> str:
    return f"{shape}-{tier}-{index:04d}"


def tier_of(machine_id: str) -> str:
    return machine_id.rsplit("-", 2)[-2]


def _plan(scenario: ClosedLoopScenario, pool: SeedPool) -> list[Seed]:
    seeds: list[Seed] = []
    for cluster in scenario.cluster_names():
        count = (
            pool.configured.get(cluster, 0)
            if isinstance(pool.configured, dict)
            else pool.configured
        )
        seeds += [Seed("", "configured", cluster)] * count
    for tier, count in (("idle", pool.idle), ("spec", pool.speculative), ("cheap", pool.cheap)):
        seeds += [Seed("", tier)] * count
    return [Seed(machine_id(pool.shape, s.tier, i), s.tier, s.cluster) for i, s in enumerate(seeds)]


def _resources(shape: Shape) -> dict[str, str]:
    return {
        name: quantity.from_milli(quantity.to_milli(text) * shape.density)
        for name, text in shape.request.items()
    }


def seed(scenario: ClosedLoopScenario, fleet: FakeFleet) -> int:
    """Add every pool's machines to `fleet`; returns how many."""
    added = 0
    for pool in scenario.pools:
        shape = scenario.shapes[pool.shape]
        plan = _plan(scenario, pool)
        for i, s in enumerate(plan):
            if scenario.layout == "round-robin":
                rack = i % scenario.racks
            else:
                rack = i * scenario.racks // len(plan)
            state, capacity, price, chance = pb.MACHINE_STATE_IDLE, "bare-metal", 0.0, 0.0
            if s.tier == "configured":
                state = pb.MACHINE_STATE_CONFIGURED
            elif s.tier == "idle" and pool.elastic_idle:
                capacity, price = "on-demand", pool.speculative_price
                chance = pool.speculative_probability
            elif s.tier == "spec":
                state, capacity = pb.MACHINE_STATE_SPECULATIVE, "on-demand"
                price, chance = pool.speculative_price, pool.speculative_probability
            elif s.tier == "cheap":
                state, capacity = pb.MACHINE_STATE_SPECULATIVE, "on-demand"
                price, chance = pool.cheap_price, pool.cheap_probability
            metadata = {}
            if s.cluster:
                metadata = {
                    codec.META_PRIORITY: str(shape.priority),
                    codec.META_INTERRUPTION: repr(float(shape.interruption_penalty)),
                    codec.META_RECLAMATION: repr(float(shape.reclamation_penalty)),
                }
            fleet.add(
                Slot(
                    id=s.id,
                    state=state,
                    instance_type=shape.instance_type,
                    zone=scenario.zones[rack % len(scenario.zones)],
                    capacity_type=CAPACITY_TYPES[capacity],
                    price_per_hour=price,
                    interruption_probability=chance,
                    resources=_resources(shape),
                    labels={CAPACITY_TYPE_LABEL: capacity, RACK_KEY: f"rack-{rack:02d}"},
                    cluster=s.cluster,
                    shard_metadata=metadata,
                )
            )
            added += 1
    return added
