"""A scale-test profile: what to run, for how long, what to break, and what must hold.

Profiles are YAML files in scaletest/profiles/ (or any path). Every field is
checked when the file is read: an unknown key, a negative count or a malformed
duration is refused with the field's path before anything starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from bigfleet.providers_fake.config import FleetConfig

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
_DURATION = re.compile(r"^(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def seconds(value: object) -> object:
    """`90`, `90s`, `1m30s` → 90.0; anything else is left for the type check to refuse."""
    if isinstance(value, str):
        found = _DURATION.match(value.strip())
        if found and any(found.groups()):
            minutes, secs = found.groups()
            return 60 * int(minutes or 0) + float(secs or 0)
        raise ValueError(f"{value!r} is not a duration (write 90, 90s or 1m30s)")
    return value


Seconds = Annotated[float, BeforeValidator(seconds), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Workload(_Strict):
    """A Deployment every simulated cluster runs, kept at `replicas` Pods; or, with
    `gangs`, that many Deployments of `replicas` Pods each, every gang's Pods required
    to share one `colocate` domain (a rack by default) by pod affinity."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    replicas: int = Field(ge=1, le=100_000)
    cpu: str = Field(default="1", pattern=r"^\d+(\.\d+)?m?$")
    priority_class: str = Field(default="", alias="priorityClass")
    gangs: int = Field(default=0, ge=0, le=10_000)
    colocate: str = Field(default="topology.kubernetes.io/rack", min_length=1)

    @property
    def pods(self) -> int:
        return self.replicas * max(self.gangs, 1)


class Steady(_Strict):
    """When the fleet counts as settled, checked every `poll`."""

    poll: Seconds = 2.0
    # Acquisitions (Provision + Bootstrap) unchanged for this many polls in a row.
    flat_polls: int = Field(default=3, ge=1, alias="flatPolls")
    # A shortfall that stands this long with no acquisition fails the run early.
    standing_shortfall: Seconds = Field(default=60.0, alias="standingShortfall")
    timeout: Seconds = 300.0  # install to settled


class Action(_Strict):
    """Something the runner breaks during the soak, and what it then checks: either a
    `kill` (SIGKILL, restart `restartAfter` later) or a `partition` (the shard's links
    to the named services cut for `lasts`, then healed)."""

    at: Seconds  # into the soak
    # coordinator-leader: whichever coordinator replica leads when the action fires.
    kill: (
        Literal[
            "shard", "coordinator", "coordinator-leader", "provider", "operator", "pod-controller"
        ]
        | None
    ) = None
    partition: list[Literal["coordinator", "provider"]] = Field(default=[], max_length=2)
    lasts: Seconds = 60.0  # how long a partition stands
    restart_after: Seconds = Field(default=5.0, alias="restartAfter")
    # After the restart (or the heal), demand must be covered again within this bound.
    recover_within: Seconds = Field(default=120.0, alias="recoverWithin")

    @model_validator(mode="after")
    def _one_fault(self) -> Action:
        if (self.kill is None) == (not self.partition):
            raise ValueError("an action either kills a process or partitions links, not both")
        if len(set(self.partition)) != len(self.partition):
            raise ValueError(f"partition names a link twice ({', '.join(self.partition)})")
        return self

    @property
    def name(self) -> str:
        if self.kill is not None:
            return f"kill {self.kill}"
        return f"partition the shard from {' and '.join(self.partition)}"


class Gates(_Strict):
    """What must hold after the soak; a gate left unset is not checked."""

    cycle_p99_s: float | None = Field(default=5.0, alias="cycleP99Seconds", gt=0)
    configure_phase_p99_s: float | None = Field(
        default=15.0, alias="configurePhaseP99Seconds", gt=0
    )
    bootstrap_success_min: float | None = Field(
        default=0.99, alias="bootstrapSuccessRatio", ge=0, le=1
    )
    rollup_p99_s: float | None = Field(default=1.0, alias="operatorRollupP99Seconds", gt=0)
    ack_p99_s: float | None = Field(default=12.0, alias="operatorAckP99Seconds", gt=0)
    upcoming_node_p99_s: float | None = Field(
        default=5.0, alias="operatorNodeStateUpdateP99Seconds", gt=0
    )
    bind_p50_s: float | None = Field(default=30.0, alias="podBindP50Seconds", gt=0)
    max_reclaims_during_soak: int = Field(default=0, alias="maxReclaimActionsDuringSoak", ge=0)


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][-a-z0-9]*$")
    description: str = ""
    clusters: int = Field(ge=1, le=20)
    workloads: list[Workload] = Field(min_length=1)
    fleet: FleetConfig  # the fake provider's pools, latencies and faults
    coordinator: bool = False
    # 1: the embedded store; more: that many replicas on a three-member etcd.
    coordinator_replicas: int = Field(default=1, alias="coordinatorReplicas", ge=1, le=5)
    cycle_interval_s: Seconds = Field(default=1.0, alias="cycleInterval")
    rollup_interval_s: Seconds = Field(default=1.0, alias="rollupInterval")
    # The Pods come over this long, in steps (0: all at once): plain workloads grow
    # by their share each step, gang workloads gain whole gangs.
    ramp_s: Seconds = Field(default=0.0, alias="ramp")
    steady: Steady = Steady()
    soak_s: Seconds = Field(default=60.0, alias="soak")
    # Fraction of the target Pods evicted per minute during the soak (their controllers
    # make new ones, which the chain must place again).
    churn_per_minute: float = Field(default=0.0, alias="churnPerMinute", ge=0, le=1)
    actions: list[Action] = []
    gates: Gates = Gates()

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.coordinator_replicas > 1 and not self.coordinator:
            raise ValueError("coordinatorReplicas above 1 needs coordinator: true")
        if any("coordinator" in a.partition for a in self.actions) and not self.coordinator:
            raise ValueError("partitioning the coordinator link needs coordinator: true")
        if self.coordinator_replicas < 2 and any(
            a.kill == "coordinator-leader" for a in self.actions
        ):
            raise ValueError("killing the coordinator leader needs coordinatorReplicas >= 2")
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names):
            raise ValueError(f"workload names repeat ({', '.join(sorted(names))})")
        return self

    @property
    def partitions(self) -> bool:
        return any(a.partition for a in self.actions)

    @property
    def pods_per_cluster(self) -> int:
        return sum(w.pods for w in self.workloads)

    @property
    def target_pods(self) -> int:
        return self.clusters * self.pods_per_cluster

    @property
    def cluster_names(self) -> list[str]:
        return [f"c{i + 1}" for i in range(self.clusters)]


class ProfileError(ValueError):
    """A profile that cannot be read or does not validate; the message names the field."""


def available() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load(name_or_path: str) -> Profile:
    """A packaged profile by name, or a profile file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ProfileError(
                f"no profile named {name_or_path!r}; packaged: {', '.join(available())}"
            )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ProfileError(f"{path}: {err}") from err
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a mapping of fields")
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "profile"
        raise ProfileError(f"{path}: {where}: {problem['msg']}") from err
