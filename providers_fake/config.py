"""The fake provider's configuration: a YAML file, or the quick `--idle/--speculative` seeds.

Example:

    name: fake
    seed: 7
    failure_rate: 0.0            # chance that any one transition fails
    transition_timeout_seconds: 0  # 0 = none; a longer latency fails at this bound
    latency: {creating: 0.5, configuring: 1, draining: 0.5, deleting: 0.2}
    pools:
      - prefix: gpu
        count: 8
        state: idle              # idle or speculative
        instance_type: a3-highgpu-8g
        zone: us-east-1a
        capacity_type: bare-metal  # bare-metal, reserved, on-demand or spot
        price_per_hour: 0
        interruption_probability: 0
        resources: {nvidia.com/gpu: "8"}
        labels: {rack: r1}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from bigfleet.providers_fake.fleet import FakeFleet, Latency, Slot
from bigfleet.wire import provider_pb2 as pb

CAPACITY_TYPES = {
    "bare-metal": pb.CAPACITY_TYPE_BARE_METAL,
    "reserved": pb.CAPACITY_TYPE_RESERVED,
    "on-demand": pb.CAPACITY_TYPE_ON_DEMAND,
    "spot": pb.CAPACITY_TYPE_SPOT,
}
STATES = {"idle": pb.MACHINE_STATE_IDLE, "speculative": pb.MACHINE_STATE_SPECULATIVE}
CAPACITY_TYPE_LABEL = "bigfleet.lucy.sh/capacity-type"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencyConfig(_Strict):
    creating: float = Field(default=0.0, ge=0)
    configuring: float = Field(default=0.0, ge=0)
    draining: float = Field(default=0.0, ge=0)
    deleting: float = Field(default=0.0, ge=0)


class Pool(_Strict):
    prefix: str = Field(min_length=1)
    count: int = Field(ge=0)
    state: Literal["idle", "speculative"] = "speculative"
    instance_type: str = "m6i.2xlarge"
    zone: str = "zone-a"
    capacity_type: Literal["bare-metal", "reserved", "on-demand", "spot"] = "on-demand"
    price_per_hour: float = Field(default=0.40, ge=0)
    interruption_probability: float = Field(default=0.0, ge=0, le=1)
    resources: dict[str, str] = Field(default_factory=lambda: {"cpu": "8", "memory": "32Gi"})
    labels: dict[str, str] = Field(default_factory=dict)


class FleetConfig(_Strict):
    name: str = "fake"
    seed: int = 0
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    transition_timeout_seconds: float = Field(default=0.0, ge=0)
    latency: LatencyConfig = LatencyConfig()
    pools: tuple[Pool, ...] = ()

    @classmethod
    def load(cls, path: Path) -> FleetConfig:
        return cls.model_validate(yaml.safe_load(path.read_text()) or {})

    def with_quick_seeds(self, idle: int, speculative: int) -> FleetConfig:
        """Add `idle` and `speculative` machines of the default general-purpose shape."""
        extra = [
            Pool(prefix=prefix, count=n, state=state)
            for prefix, n, state in (("idle", idle, "idle"), ("spec", speculative, "speculative"))
            if n
        ]
        return self.model_copy(update={"pools": (*self.pools, *extra)})

    def build(self, clock: Callable[[], float]) -> FakeFleet:
        fleet = FakeFleet(
            name=self.name,
            clock=clock,
            latency=Latency(**self.latency.model_dump()),
            failure_rate=self.failure_rate,
            transition_timeout=self.transition_timeout_seconds,
            seed=self.seed,
        )
        self.seed_into(fleet)
        return fleet

    def seed_into(self, fleet: FakeFleet) -> None:
        """Add every pool's machines to `fleet`."""
        for pool in self.pools:
            for i in range(pool.count):
                fleet.add(
                    Slot(
                        id=f"{pool.prefix}-{i}",
                        state=STATES[pool.state],
                        instance_type=pool.instance_type,
                        zone=pool.zone,
                        capacity_type=CAPACITY_TYPES[pool.capacity_type],
                        price_per_hour=pool.price_per_hour,
                        interruption_probability=pool.interruption_probability,
                        resources=dict(pool.resources),
                        labels={CAPACITY_TYPE_LABEL: pool.capacity_type, **pool.labels},
                    )
                )
