"""Closed-loop scenario declarations (`sim/closedloop/scenarios/*.yaml`, `kind: closed-loop`).

A scenario names machine shapes, seed pools over racks and zones, clusters of
workloads, scheduled rescales and incumbent losses, the engine's settings and
the pass conditions the run must meet (`expect`). Unknown keys are refused,
naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bigfleet.providers_fake.config import LatencyConfig
from bigfleet.sim.scenario import EngineSpec

CLOSED_LOOP_DIR = Path(__file__).resolve().parent / "scenarios"
RACK_KEY = "topology.bigfleet/rack"
ZONE_KEY = "topology.kubernetes.io/zone"
DOMAIN_KEYS = {"rack": RACK_KEY, "zone": ZONE_KEY}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shape(_Strict):
    """A kind of Pod and the machine type that holds `density` of them."""

    request: dict[str, str] = Field(min_length=1)  # one Pod's requests
    density: int = Field(default=8, ge=1)  # Pods per machine: allocatable = density x request
    instance_type: str
    zone: str | None = None  # a required zone: the Pods are affinity-constrained
    priority: int = 100
    interruption_penalty: float = Field(default=100, ge=0)  # dollars
    reclamation_penalty: float = Field(default=10, ge=0)
    # A gang object's co-location domain; a shape without one makes plain Pods.
    same: Literal["rack", "zone"] | None = None


class SeedPool(_Strict):
    """Machines of one shape (validation.md §2.1, "Seeding")."""

    shape: str
    # Configured per cluster: one count for every cluster, or a count by cluster name.
    configured: int | dict[str, int] = 0
    idle: int = Field(default=0, ge=0)  # shard-wide Idle: bare metal, price 0
    # Idle as an elastic tier instead: on-demand at the speculative price, so it can be released.
    elastic_idle: bool = False
    speculative: int = Field(default=0, ge=0)  # on-demand, 1.0/h, probability 0.05
    cheap: int = Field(default=0, ge=0)  # a cheaper, riskier speculative tier: 0.3/h, 0.30
    speculative_price: float = Field(default=1.0, ge=0)
    speculative_probability: float = Field(default=0.05, ge=0, le=1)
    cheap_price: float = Field(default=0.3, ge=0)
    cheap_probability: float = Field(default=0.30, ge=0, le=1)


class WorkloadSpec(_Strict):
    """`objects` workload objects of `replicas` Pods each; a gang shape makes each object one
    co-location group. Controller-managed Pods are recreated pending when evicted; bare
    Pods (`managed: false`) are gone."""

    name: str = Field(min_length=1)
    shape: str
    replicas: int = Field(ge=0)
    objects: int = Field(default=1, ge=1)
    managed: bool = True


class ClusterSpec(_Strict):
    name: str = Field(min_length=1)
    count: int = Field(default=1, ge=1)  # more than one: clusters <name>-00, <name>-01, ...
    workloads: tuple[WorkloadSpec, ...] = ()

    def names(self) -> list[str]:
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{i:02d}" for i in range(self.count)]


class Rescale(_Strict):
    """At the start of `cycle` (1-based), every object of the workload gets `replicas` Pods."""

    cycle: int = Field(ge=1)
    cluster: str
    workload: str
    replicas: int = Field(ge=0)


class Loss(_Strict):
    """At the start of `cycle`, the cluster's `count` lowest-id Configured machines vanish from
    the provider (lost incumbents)."""

    cycle: int = Field(ge=1)
    cluster: str
    count: int = Field(ge=1)


ACTION_KINDS = ("Bootstrap", "Provision", "Preempt", "Reclaim", "Delete")
CycleField = Literal[
    "Bootstrap",
    "Provision",
    "Preempt",
    "Reclaim",
    "Delete",
    "churn",
    "configured",
    "demand",
    "bound",
    "pending",
    "live",
    "evicted",
    "shortfalls",
    "probe",
]


class Expect(_Strict):
    """Pass conditions (validation.md §2.2's invariant families); each one left out is not
    checked. The window is the last `quiescent_last` cycles (the whole run without it)."""

    # Quiescence: no action in the window, and the shortfall count constant in it.
    quiescent_last: int | None = Field(default=None, ge=1)
    # The shortfall count in the window: zero, or the same non-zero count throughout.
    shortfall: Literal["zero", "stable_nonzero"] | None = None
    # Right-sized fleet: Configured machines equal demand in machines at the end.
    configured_equals_demand: bool = False
    # At least this share of target Pods bound at the end.
    bound_ratio_min: float | None = Field(default=None, ge=0, le=1)
    # Demand conservation: live Pods equal the target at the end.
    live_equals_target: bool = False
    # No reclaim of wanted capacity: the probe sums to 0 in the window.
    probe_zero: bool = False
    # No gang ever has bound members in two domains (checked every cycle).
    gangs_never_scatter: bool = False
    # Exact totals of actions over the whole run, by kind.
    actions: dict[Literal["Bootstrap", "Provision", "Preempt", "Reclaim", "Delete"], int] | None = (
        None
    )
    # Exact Pods evicted over the whole run.
    evictions: int | None = Field(default=None, ge=0)
    # Exact per-cycle counters at named cycles (1-based).
    at_cycle: dict[int, dict[CycleField, int]] | None = None
    # Exact bound Pods of named workloads at the end (summed over the workload's objects).
    bound_per_workload: dict[str, int] | None = None
    # Exact Configured machines of each seed tier at the end (configured, idle, spec, cheap).
    configured_by_tier: dict[Literal["configured", "idle", "spec", "cheap"], int] | None = None
    # The declared canary signature: the run passes only if it shows the class of bug and
    # every other declared condition FAILS (the harness must see it).
    canary: Literal["cascades", "oscillates"] | None = None


class ClosedLoopScenario(_Strict):
    name: str
    description: str = ""
    kind: Literal["closed-loop"]
    cycles: int = Field(default=60, ge=1)
    seed: int = Field(default=0xC0FFEE, ge=0)
    racks: int = Field(default=4, ge=1)
    zones: tuple[str, ...] = Field(default=("zone-a",), min_length=1)
    # How machines of a pool spread over racks: one rack after another, or in blocks.
    layout: Literal["round-robin", "contiguous"] = "round-robin"
    shapes: dict[str, Shape] = Field(min_length=1)
    pools: tuple[SeedPool, ...] = ()
    clusters: tuple[ClusterSpec, ...] = Field(min_length=1)
    rescales: tuple[Rescale, ...] = ()
    losses: tuple[Loss, ...] = ()
    # One CapacityRequest per live Pod, or (the canary) only for pending Pods.
    cr_per_pod: bool = True
    # Roll-up arrival stamps rotate which cluster looks oldest, instead of one stamp for all.
    rotate_arrivals: bool = False
    # Simulated seconds the fake dwells in Creating (provision) and Configuring (bootstrap).
    latency: LatencyConfig = LatencyConfig()
    blob_dwell_seconds: float = Field(default=0.0, ge=0)
    engine: EngineSpec = EngineSpec()
    expect: Expect = Expect()

    @model_validator(mode="after")
    def _consistent(self) -> ClosedLoopScenario:
        names = [n for c in self.clusters for n in c.names()]
        if len(set(names)) != len(names):
            raise ValueError("clusters: names repeat")
        for i, pool in enumerate(self.pools):
            if pool.shape not in self.shapes:
                raise ValueError(f"pools[{i}].shape: no shape {pool.shape!r}")
            if isinstance(pool.configured, dict):
                for cluster in pool.configured:
                    if cluster not in names:
                        raise ValueError(f"pools[{i}].configured: no cluster {cluster!r}")
        for c in self.clusters:
            for w in c.workloads:
                if w.shape not in self.shapes:
                    raise ValueError(f"clusters.{c.name}.{w.name}.shape: no shape {w.shape!r}")
        workloads = {(n, w.name) for c in self.clusters for n in c.names() for w in c.workloads}
        for i, r in enumerate(self.rescales):
            if (r.cluster, r.workload) not in workloads:
                raise ValueError(f"rescales[{i}]: no workload {r.workload!r} in {r.cluster!r}")
        for i, loss in enumerate(self.losses):
            if loss.cluster not in names:
                raise ValueError(f"losses[{i}].cluster: no cluster {loss.cluster!r}")
        return self

    def cluster_names(self) -> list[str]:
        return [n for c in self.clusters for n in c.names()]

    @classmethod
    def load(cls, path: Path) -> ClosedLoopScenario:
        return cls.model_validate(yaml.safe_load(path.read_text()))


def catalog(directory: Path = CLOSED_LOOP_DIR) -> dict[str, Path]:
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def find(name_or_path: str) -> ClosedLoopScenario:
    path = Path(name_or_path)
    if not path.is_file():
        known = catalog()
        if name_or_path not in known:
            raise KeyError(f"no closed-loop scenario {name_or_path!r}; known: {', '.join(known)}")
        path = known[name_or_path]
    return ClosedLoopScenario.load(path)
