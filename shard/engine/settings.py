"""EngineSettings: every behavioural tunable of the decision engine, as one frozen value.

The shard builds it from its flags (`bigfleet shard --idle-hold ...`), a simulator
scenario from its `engine:` block, tests directly. The engine reads only what it is
handed; the defaults are the values of engine.md, so an engine built with
`EngineSettings()` decides exactly as before these were settings.

Constants that shape what the engine reports rather than what it decides stay
constants in their modules (the shortfall report cap and its escalation age, the
domains a verdict shows, the empty-roll-up quarantine's thresholds, the drain grace
table of the preemption formula).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from bigfleet.shard.engine.machine import CapacityType


class SettingError(ValueError):
    """A setting out of its range; `name` is the field (dotted below a nested one)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _finite_at_least(name: str, value: float, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(name, f"must be a number, not {value!r}")
    if not math.isfinite(value) or value < low:
        raise SettingError(name, f"must be a finite number at least {low:g}, not {value!r}")


def _int_at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingError(name, f"must be a whole number, not {value!r}")
    if value < low:
        raise SettingError(name, f"must be at least {low}, not {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RailSettings:
    """What of a decided cycle executes (rails.apply); the Shard resource flips the switches."""

    reclaim_cap_fraction: float = 0.05  # 0 turns the cap off
    pause_acquisitions: bool = False
    pause_reclaims: bool = False
    dry_run: bool = False
    max_actions_per_cycle: int = 0  # 0 = unlimited

    def __post_init__(self) -> None:
        _finite_at_least("rails.reclaim_cap_fraction", self.reclaim_cap_fraction, 0.0)
        if self.reclaim_cap_fraction > 1:
            raise SettingError(
                "rails.reclaim_cap_fraction",
                f"must be at most 1, not {self.reclaim_cap_fraction!r}",
            )
        _int_at_least("rails.max_actions_per_cycle", self.max_actions_per_cycle, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class VictimWeights:
    """Phase 2's victim score weights (engine.md §3): priority gap, drain speed,
    interruption and reclamation penalty."""

    priority: float = 1.0
    drain: float = 0.1
    interruption: float = 0.1
    reclamation: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            _finite_at_least(f"victim_weights.{f.name}", getattr(self, f.name), 0.0)


class IdleHolds(Mapping[CapacityType, float]):
    """Seconds per capacity type, read-only: equal to, hashed, copied and pickled as data."""

    def __init__(self, holds: Mapping[CapacityType, float] | None = None) -> None:
        self._holds = dict(holds or {})

    def __getitem__(self, key: CapacityType) -> float:
        return self._holds[key]

    def __iter__(self) -> Iterator[CapacityType]:
        return iter(self._holds)

    def __len__(self) -> int:
        return len(self._holds)

    def __hash__(self) -> int:
        return hash(frozenset(self._holds.items()))

    def __repr__(self) -> str:
        return f"IdleHolds({self._holds!r})"


# Seconds an unclaimed Idle machine is held before release; absent types are never released.
DEFAULT_IDLE_HOLD_S: Mapping[CapacityType, float] = IdleHolds(
    {CapacityType.ON_DEMAND: 600.0, CapacityType.SPOT: 60.0}
)

# How people write capacity types in flags and scenarios.
CAPACITY_TYPE_NAMES: Mapping[str, CapacityType] = MappingProxyType(
    {
        "bare-metal": CapacityType.BARE_METAL,
        "reserved": CapacityType.RESERVED,
        "on-demand": CapacityType.ON_DEMAND,
        "spot": CapacityType.SPOT,
    }
)


def capacity_type_name(capacity_type: CapacityType) -> str:
    return next(n for n, t in CAPACITY_TYPE_NAMES.items() if t is capacity_type)


def idle_holds(
    overrides: Mapping[str, float | None], base: Mapping[CapacityType, float] = DEFAULT_IDLE_HOLD_S
) -> Mapping[CapacityType, float]:
    """`base` with holds named by capacity type replaced; None: that type is never released."""
    holds = dict(base)
    for name, seconds in overrides.items():
        capacity_type = CAPACITY_TYPE_NAMES.get(name)
        if capacity_type is None:
            known = ", ".join(CAPACITY_TYPE_NAMES)
            raise SettingError("idle_hold_s", f"no capacity type {name!r}; known: {known}")
        if seconds is None:
            holds.pop(capacity_type, None)
        else:
            holds[capacity_type] = seconds
    return IdleHolds(holds)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """Everything the engine's decisions depend on besides its inputs.

    Defaults are engine.md's: Idle on-demand held 10 min and spot 1 min before release
    (other types never), victim weights (1.0, 0.1, 0.1, 0.1) with one 30 s drain
    estimate, reclaims drained with 10 min grace, a stuck co-location need parked after
    8 cycles and re-probed every 32nd.
    """

    rails: RailSettings = field(default_factory=RailSettings)
    # Per capacity type, seconds an unclaimed Idle machine is held before release.
    idle_hold_s: Mapping[CapacityType, float] = field(default_factory=lambda: DEFAULT_IDLE_HOLD_S)
    victim_weights: VictimWeights = field(default_factory=VictimWeights)
    # One drain-time estimate for every victim, so the drain term never discriminates.
    drain_estimate_s: float = 30.0
    reclaim_grace_s: int = 600  # the grace a Phase 3 reclaim drains with
    same_park_after_cycles: int = 8  # a stuck co-location need is parked at this age
    same_reprobe_every_cycles: int = 32  # ... and re-probed on every multiple of this

    def __post_init__(self) -> None:
        if not isinstance(self.rails, RailSettings):
            raise SettingError("rails", f"must be RailSettings, not {self.rails!r}")
        if not isinstance(self.victim_weights, VictimWeights):
            raise SettingError(
                "victim_weights", f"must be VictimWeights, not {self.victim_weights!r}"
            )
        if not isinstance(self.idle_hold_s, Mapping):
            raise SettingError("idle_hold_s", f"must be a mapping, not {self.idle_hold_s!r}")
        holds: dict[CapacityType, float] = {}
        for capacity_type, seconds in self.idle_hold_s.items():
            if not isinstance(capacity_type, CapacityType):
                raise SettingError("idle_hold_s", f"{capacity_type!r} is not a capacity type")
            if capacity_type is CapacityType.UNSPECIFIED:
                raise SettingError("idle_hold_s", "a machine of no capacity type is never released")
            _finite_at_least(f"idle_hold_s[{capacity_type_name(capacity_type)}]", seconds, 0.0)
            holds[capacity_type] = float(seconds)
        # A read-only copy: the caller's mapping may change, these settings may not.
        object.__setattr__(self, "idle_hold_s", IdleHolds(holds))
        _finite_at_least("drain_estimate_s", self.drain_estimate_s, 0.0)
        _int_at_least("reclaim_grace_s", self.reclaim_grace_s, 0)
        _int_at_least("same_park_after_cycles", self.same_park_after_cycles, 1)
        _int_at_least("same_reprobe_every_cycles", self.same_reprobe_every_cycles, 1)
