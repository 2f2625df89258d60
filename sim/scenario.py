"""Scenario declarations: seed machines, one-shot faults, a timeline of roll-ups, expectations.

Scenarios are YAML files in sim/scenarios/. A scripted scenario replays its
timeline; a soak scenario drives random, seeded churn (validation.md §1-§2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bigfleet.providers_fake.config import LatencyConfig, Pool
from bigfleet.requirements import OperatorName
from bigfleet.shard.engine.settings import (
    EngineSettings,
    RailSettings,
    SettingError,
    VictimWeights,
    idle_holds,
)

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"  # recorded traces of scripted scenarios


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requirement(_Strict):
    key: str
    operator: OperatorName
    values: tuple[str, ...] = ()


class NeedSpec(_Strict):
    """One CapacityNeed of a roll-up, in the units people write."""

    requirements: tuple[Requirement, ...] = ()
    aggregate: dict[str, str]
    min_unit: dict[str, str] = Field(default_factory=dict)
    priority: int = 0
    interruption_penalty: float | None = None  # dollars; bucketed as the operator would
    reclamation_penalty: float | None = None  # dollars; None = "pinned" scenario default
    group: str = ""


class Event(_Strict):
    cluster: str
    needs: tuple[NeedSpec, ...] = ()  # empty = withdrawal
    cycles: int = Field(default=1, ge=0)


class Fault(_Strict):
    machine: str
    toward: Literal["Idle", "Configured", "Speculative"]
    error: str = "injected fault"


class Expect(_Strict):
    by_state: dict[str, int] | None = None
    configured_per_cluster: dict[str, int] | None = None
    shortfalls: int | None = None
    shortfall_deficit: dict[str, str] | None = None  # summed over entries
    actions_by_kind: dict[str, int] | None = None


class Soak(_Strict):
    """Closed-loop churn (validation.md §2.4): every `replace_every` cycles a random
    cluster's demand is replaced by one need of 1..max_units machines at a random
    priority; every `withdraw_every` cycles a random cluster withdraws all of it."""

    clusters: int = Field(default=30, ge=1)
    cycles: int = Field(default=10_000, ge=1)
    replace_every: int = Field(default=5, ge=1)
    withdraw_every: int = Field(default=35, ge=1)
    max_units: int = Field(default=50, ge=1)  # a replacement asks for 1..max_units machines
    quiet_cycles: int = Field(default=80, ge=1)  # churn-free cycles run before the checks
    window: int = Field(default=10, ge=1)  # trailing cycles that must be quiescent
    instance_type: str = "soak-instance"
    unit: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu": "1"})
    seed: int = Field(default=0xCAFEBABE, ge=0)  # when the command names none


_ENGINE = EngineSettings()
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class VictimWeightsSpec(_Strict):
    priority: _Weight = _ENGINE.victim_weights.priority
    drain: _Weight = _ENGINE.victim_weights.drain
    interruption: _Weight = _ENGINE.victim_weights.interruption
    reclamation: _Weight = _ENGINE.victim_weights.reclamation


class RailsSpec(_Strict):
    """The rails a scenario runs with; off unless it asks (validation.md §2.1)."""

    reclaim_cap_fraction: float = Field(default=0.0, ge=0, le=1)
    max_actions_per_cycle: int = Field(default=0, ge=0)


# Scenario key -> EngineSettings field, to name the key when the settings refuse a value.
_SETTING_KEYS = {
    "idle_hold_s": "idle_hold_seconds",
    "drain_estimate_s": "drain_estimate_seconds",
    "reclaim_grace_s": "reclaim_grace_seconds",
}


class EngineSpec(_Strict):
    """The `engine:` block: the engine's settings for this scenario (EngineSettings; the
    same as the shard's flags, docs/simulator.md). Keys left out keep the engine's default."""

    # Per capacity type (bare-metal, reserved, on-demand, spot); null: never released.
    # Types not named keep their default hold.
    idle_hold_seconds: dict[
        Literal["bare-metal", "reserved", "on-demand", "spot"], _Seconds | None
    ] = Field(default_factory=dict)
    victim_weights: VictimWeightsSpec = VictimWeightsSpec()
    drain_estimate_seconds: _Seconds = _ENGINE.drain_estimate_s
    reclaim_grace_seconds: int = Field(default=_ENGINE.reclaim_grace_s, ge=0)
    same_park_after_cycles: int = Field(default=_ENGINE.same_park_after_cycles, ge=1)
    same_reprobe_every_cycles: int = Field(default=_ENGINE.same_reprobe_every_cycles, ge=1)
    rails: RailsSpec = RailsSpec()

    @model_validator(mode="after")
    def _settles(self) -> EngineSpec:
        try:
            self.settings()
        except SettingError as err:
            field = err.name.partition(".")[0].partition("[")[0]
            raise ValueError(f"{_SETTING_KEYS.get(field, field)}: {err}") from err
        return self

    def settings(self) -> EngineSettings:
        return EngineSettings(
            rails=RailSettings(**self.rails.model_dump()),
            idle_hold_s=idle_holds({str(k): v for k, v in self.idle_hold_seconds.items()}),
            victim_weights=VictimWeights(**self.victim_weights.model_dump()),
            drain_estimate_s=self.drain_estimate_seconds,
            reclaim_grace_s=self.reclaim_grace_seconds,
            same_park_after_cycles=self.same_park_after_cycles,
            same_reprobe_every_cycles=self.same_reprobe_every_cycles,
        )


class Scenario(_Strict):
    name: str
    description: str = ""
    kind: Literal["scripted", "soak"] = "scripted"
    pools: tuple[Pool, ...] = ()
    # Simulated seconds the fake dwells in each transitional state, and the operators take to
    # answer a join blob; 0 = at once (the reference harness's instant transitions).
    latency: LatencyConfig = LatencyConfig()
    blob_dwell_seconds: float = Field(default=0.0, ge=0)
    faults: tuple[Fault, ...] = ()
    timeline: tuple[Event, ...] = ()
    expect: Expect = Expect()
    soak: Soak | None = None
    engine: EngineSpec = EngineSpec()

    @classmethod
    def load(cls, path: Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(path.read_text()))


def catalog(directory: Path = SCENARIO_DIR) -> dict[str, Path]:
    """Scenario name -> file, for every YAML file in `directory`."""
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def find(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.is_file():
        known = catalog()
        if name_or_path not in known:
            raise KeyError(f"no scenario {name_or_path!r}; known: {', '.join(known)}")
        path = known[name_or_path]
    return Scenario.load(path)
