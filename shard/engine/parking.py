"""Acquisition parking of co-location needs that cannot make progress (engine.md §2.7).

A Same need that stays unsatisfied, acquires nothing and has no satisfiable
domain ages by one per cycle; any progress resets it; classes not seen are
forgotten. Old classes are parked: they keep what they assembled but stop
acquiring and preempting, except on a periodic re-probe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bigfleet.shard.engine.decision.actions import Unsatisfied
from bigfleet.shard.engine.decision.cost import same_parked
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.engine.settings import EngineSettings

ClassKey = tuple[str, str, str]


def class_key(need: Need) -> ClassKey:
    return (need.cluster, need.group, need.fingerprint)


class ParkingLedger:
    def __init__(self, settings: EngineSettings | None = None) -> None:
        settings = settings or EngineSettings()
        self._park_after = settings.same_park_after_cycles
        self._reprobe_every = settings.same_reprobe_every_cycles
        self._ages: dict[ClassKey, int] = {}

    def stamp(self, demand: list[Need]) -> list[Need]:
        """Demand with `parked` set on the Same needs whose class is old enough."""
        parked = {
            key
            for key, age in self._ages.items()
            if same_parked(age, self._park_after, self._reprobe_every)
        }
        if not parked:  # the usual case: nothing is old enough, nothing to look up
            return list(demand)
        return [
            replace(n, parked=True) if n.profile.same is not None and class_key(n) in parked else n
            for n in demand
        ]

    def update(self, unsatisfied: list[Unsatisfied]) -> None:
        """Age the classes still stuck after a cycle (`unsatisfied` is that cycle's, so each
        of its needs is in the demand it ran on); every other class starts again at 0."""
        stuck = {
            class_key(u.need)
            for u in unsatisfied
            if u.need.profile.same is not None and u.acquired == 0 and not u.same_satisfiable
        }
        self._ages = {key: self._ages.get(key, 0) + 1 for key in stuck}

    @property
    def ages(self) -> Mapping[ClassKey, int]:
        """A snapshot: each update builds a new mapping."""
        return self._ages

    def age(self, need: Need) -> int:
        return self._ages.get(class_key(need), 0)
