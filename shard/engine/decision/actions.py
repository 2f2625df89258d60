"""Action: one step the engine decides; the runtime (or the simulator) carries it out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bigfleet.shard.engine.needs import Need
from bigfleet.shard.engine.resources import Vector


class ActionKind(StrEnum):
    BOOTSTRAP = "Bootstrap"  # bind an Idle machine to a cluster (phase 1)
    PROVISION = "Provision"  # create a Speculative machine, then bootstrap it (phase 1)
    PREEMPT = "Preempt"  # drain a lower-priority machine for an inversion (phase 2)
    RECLAIM = "Reclaim"  # drain an unclaimed Configured machine (phase 3)
    DELETE = "Delete"  # release an Idle machine back to a quota slot (phase 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    kind: ActionKind
    machine_id: str
    cluster: str  # destination for phase 1, current cluster for drains, "" for Delete
    reason: str
    need: Need | None = None  # the source need of a Bootstrap or Provision
    grace_seconds: int = 0
    preemptor_priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsatisfied:
    """A need whose claimed supply leaves a residual after a phase."""

    need: Need
    deficit: Vector
    same_domain: str = ""
    same_satisfiable: bool = False
    acquired: int = 0  # Idle and Speculative machines claimed this cycle
    preempted: bool = False


@dataclass(frozen=True, slots=True)
class Preemption:
    """What Phase 2 found for one need: victims picked and the capacity they free."""

    victims: int
    freed: Vector
