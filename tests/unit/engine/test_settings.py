"""EngineSettings: refused when out of range, naming the field, and read by the engine:
each setting changes a decision when it differs from its default."""

from __future__ import annotations

import copy
import math
import pickle

import pytest

from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision import phase1, phase2
from bigfleet.shard.engine.machine import CapacityType, Machine
from bigfleet.shard.engine.settings import (
    DEFAULT_IDLE_HOLD_S,
    EngineSettings,
    RailSettings,
    SettingError,
    VictimWeights,
    idle_holds,
)
from tests.unit.engine.builders import S, inventory, kinds, machine, need, table

OD, SPOT, BM = CapacityType.ON_DEMAND, CapacityType.SPOT, CapacityType.BARE_METAL
NO_CAP = RailSettings(reclaim_cap_fraction=0)


def test_the_defaults_are_engine_md_s() -> None:
    s = EngineSettings()
    assert dict(s.idle_hold_s) == {OD: 600.0, SPOT: 60.0} == dict(DEFAULT_IDLE_HOLD_S)
    assert s.victim_weights == VictimWeights(
        priority=1.0, drain=0.1, interruption=0.1, reclamation=0.1
    )
    assert (s.drain_estimate_s, s.reclaim_grace_s) == (30.0, 600)
    assert (s.same_park_after_cycles, s.same_reprobe_every_cycles) == (8, 32)
    assert s.rails == RailSettings(reclaim_cap_fraction=0.05)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: EngineSettings(idle_hold_s={SPOT: -1.0}), "idle_hold_s[spot]"),
        (lambda: EngineSettings(idle_hold_s={OD: math.nan}), "idle_hold_s[on-demand]"),
        (lambda: EngineSettings(idle_hold_s={OD: math.inf}), "idle_hold_s[on-demand]"),
        (lambda: EngineSettings(idle_hold_s={CapacityType.UNSPECIFIED: 1.0}), "idle_hold_s"),
        (lambda: EngineSettings(idle_hold_s={"spot": 1.0}), "idle_hold_s"),  # type: ignore[dict-item]
        (lambda: EngineSettings(same_reprobe_every_cycles=0), "same_reprobe_every_cycles"),
        (lambda: EngineSettings(same_park_after_cycles=0), "same_park_after_cycles"),
        (lambda: EngineSettings(drain_estimate_s=-1.0), "drain_estimate_s"),
        (lambda: EngineSettings(drain_estimate_s=math.nan), "drain_estimate_s"),
        (lambda: EngineSettings(reclaim_grace_s=-1), "reclaim_grace_s"),
        (lambda: EngineSettings(reclaim_grace_s=1.5), "reclaim_grace_s"),  # type: ignore[arg-type]
        (lambda: VictimWeights(priority=-0.5), "victim_weights.priority"),
        (lambda: VictimWeights(drain=math.inf), "victim_weights.drain"),
        (lambda: RailSettings(reclaim_cap_fraction=1.5), "rails.reclaim_cap_fraction"),
        (lambda: RailSettings(reclaim_cap_fraction=-0.1), "rails.reclaim_cap_fraction"),
        (lambda: RailSettings(max_actions_per_cycle=-1), "rails.max_actions_per_cycle"),
        (lambda: idle_holds({"gpu": 1.0}), "idle_hold_s"),
    ],
)
def test_a_value_out_of_range_is_refused_naming_its_field(build: object, name: str) -> None:
    with pytest.raises(SettingError) as refused:
        build()  # type: ignore[operator]
    assert refused.value.name == name
    assert str(refused.value).startswith(f"{name}: ")
    assert isinstance(refused.value, ValueError)


def test_the_holds_are_a_read_only_copy() -> None:
    holds = {OD: 30.0}
    s = EngineSettings(idle_hold_s=holds)
    holds[SPOT] = 1.0
    assert dict(s.idle_hold_s) == {OD: 30.0}
    with pytest.raises(TypeError):
        s.idle_hold_s[SPOT] = 1.0  # type: ignore[index]


def test_settings_are_plain_data_equal_hashed_copied_and_pickled_by_value() -> None:
    s = EngineSettings(idle_hold_s={OD: 30.0}, rails=NO_CAP)
    assert copy.deepcopy(s) == s == pickle.loads(pickle.dumps(s))
    assert hash(s) == hash(EngineSettings(idle_hold_s={OD: 30}, rails=NO_CAP))
    assert s != EngineSettings(idle_hold_s={OD: 31.0}, rails=NO_CAP)


def test_holds_named_by_type_replace_the_default_and_never_removes_one() -> None:
    assert dict(idle_holds({"on-demand": 0.0})) == {OD: 0.0, SPOT: 60.0}
    assert dict(idle_holds({"spot": None, "reserved": 5.0})) == {
        OD: 600.0,
        CapacityType.RESERVED: 5.0,
    }


def _idle_fleet() -> list[Machine]:
    return [
        machine("idle-bm", S.IDLE, capacity_type=BM),
        machine("idle-od", S.IDLE, capacity_type=OD, price=1.0),
        machine("idle-spot", S.IDLE, capacity_type=SPOT, price=0.3),
    ]


@pytest.mark.parametrize(
    ("holds", "deleted"),
    [
        (None, ["idle-spot"]),  # the defaults: on-demand is held 600 s, spot 60 s
        ({OD: 30.0, SPOT: 60.0}, ["idle-od", "idle-spot"]),
        ({OD: 30.0}, ["idle-od"]),  # spot has no hold: never released
        ({BM: 0.0}, ["idle-bm"]),
    ],
)
def test_the_engine_releases_after_the_holds_it_was_given(
    holds: dict[CapacityType, float] | None, deleted: list[str]
) -> None:
    settings = EngineSettings(rails=NO_CAP, **({} if holds is None else {"idle_hold_s": holds}))
    inv = inventory(*_idle_fleet(), now=1000.0)
    result = Engine(settings).cycle(inv, table(), set(), now=1000.0 + 90)
    assert kinds(result.decided) == [("Delete", m) for m in deleted]


def test_reclaims_drain_with_the_configured_grace() -> None:
    inv = inventory(*(machine(f"i-{i}", S.CONFIGURED, cluster="c1", price=6.0) for i in range(3)))
    for grace in (600, 45):
        engine = Engine(EngineSettings(rails=NO_CAP, reclaim_grace_s=grace))
        result = engine.cycle(inv, table(need("c1", 100, 1)), {"c1"}, now=0)
        assert kinds(result.decided) == [("Reclaim", "i-1"), ("Reclaim", "i-2")]
        assert {a.grace_seconds for a in result.decided} == {grace}


def test_victim_weights_decide_who_is_preempted() -> None:
    # The widest priority gap against the lowest interruption penalty.
    low = machine("v-low", S.CONFIGURED, cluster="x", priority=0, interruption=131_072)
    mid = machine("v-mid", S.CONFIGURED, cluster="x", priority=500_000, interruption=1)
    inv = inventory(low, mid)
    first = phase1.run(inv, [need("y", 1_000_000, 1)])
    by_default = phase2.run(inv, first.unsatisfied)
    assert kinds(by_default.actions) == [("Preempt", "v-low")]
    penalty_only = EngineSettings(victim_weights=VictimWeights(priority=0, interruption=1))
    weighted = phase2.run(inv, first.unsatisfied, penalty_only)
    assert kinds(weighted.actions) == [("Preempt", "v-mid")]


def _racks_held_by_another_cluster() -> list[Machine]:
    """Two racks of three, all bound elsewhere: a gang of five finds nothing to acquire."""
    return [
        machine(f"{rack}-{i}", S.CONFIGURED, cluster="other", labels={"rack": rack})
        for rack in ("r1", "r2")
        for i in range(3)
    ]


@pytest.mark.parametrize(
    ("park_after", "reprobe_every", "parked"),
    [(8, 32, False), (2, 32, True), (2, 2, False), (3, 32, False)],
)
def test_a_stuck_gang_parks_after_the_configured_age(
    park_after: int, reprobe_every: int, parked: bool
) -> None:
    """A 5-machine gang in racks of 3 is stuck; two cycles make it age 2."""
    n = need("c1", 1000, 5, same="rack", group="g")
    engine = Engine(
        EngineSettings(
            rails=NO_CAP,
            same_park_after_cycles=park_after,
            same_reprobe_every_cycles=reprobe_every,
        )
    )
    inv = inventory(*_racks_held_by_another_cluster())
    for cycle in range(2):
        engine.cycle(inv, table(n), {"c1"}, now=cycle)
    assert engine.parking.age(n) == 2
    assert engine.parking.stamp([n])[0].parked is parked
