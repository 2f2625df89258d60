"""Folded sub-machine gangs count machines in whole gangs (the claim-granularity fix).

A gang smaller than one machine folds into a plain need whose unit is one gang
(engine.md E11). Its pieces cannot be split across machines, so a machine
covers only the gangs that fit on it whole: five 3-GPU gangs need three 8-GPU
machines (two gangs each), not the two that 15 GPUs of aggregate suggest.
"""

from __future__ import annotations

from bigfleet.shard.engine import resources as rv
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.decision.actions import ActionKind
from bigfleet.shard.engine.needs import credit
from bigfleet.shard.engine.normalize import normalize
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from tests.unit.engine.builders import GPU, S, inventory, machine, need, table

RACK = "topology.bigfleet/rack"


def _gangs(count: int, size: int) -> list:  # type: ignore[type-arg]
    return [
        need(
            "c1",
            1000,
            0,
            same=RACK,
            group=f"g{i}",
            aggregate={GPU: size * 1000},
            min_unit={GPU: 1000},
        )
        for i in range(count)
    ]


def _bound(*racks: str) -> list:  # type: ignore[type-arg]
    return [
        machine(f"b-{i}", S.CONFIGURED, cluster="c1", alloc={GPU: 8000}, labels={RACK: r})
        for i, r in enumerate(racks)
    ]


def test_whole_units_cuts_each_dimension_to_the_units_that_fit() -> None:
    assert rv.whole_units({GPU: 8000, "cpu": 64_000}, {GPU: 3000}) == {GPU: 6000, "cpu": 64_000}
    assert rv.whole_units({"cpu": 16_000, "memory": 32}, {"cpu": 4000, "memory": 10}) == {
        "cpu": 12_000,
        "memory": 30,
    }
    assert rv.whole_units({GPU: 8000}, {}) == {GPU: 8000}


def test_the_fold_of_sub_machine_gangs_credits_whole_gangs_per_machine() -> None:
    inv = inventory(*_bound("r0", "r1"))
    folded = normalize(inv, _gangs(5, 3))
    assert len(folded) == 1 and folded[0].whole_units
    assert credit(folded[0], inv.get("b-0")) == {GPU: 6000}  # type: ignore[arg-type]
    plain = need("c1", 1000, 1)
    assert not plain.whole_units
    assert credit(plain, inv.get("b-0")) == {GPU: 8000}  # type: ignore[arg-type]


def test_bound_machines_that_cannot_hold_every_gang_whole_acquire_one_more() -> None:
    """Before the fix: 16 bound GPUs 'covered' 15 GPUs of gangs, nothing was acquired and a
    gang stayed pending for ever with no shortfall."""
    inv = inventory(
        *_bound("r0", "r1"),
        machine("idle-0", S.IDLE, alloc={GPU: 8000}, labels={RACK: "r2"}),
    )
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    result = engine.cycle(inv, table(*_gangs(5, 3)), {"c1"}, 0.0)
    assert [(a.kind, a.machine_id) for a in result.rails.execute] == [
        (ActionKind.BOOTSTRAP, "idle-0")
    ]
    assert not result.phase2.unresolved


def test_bound_machines_that_hold_every_gang_whole_acquire_nothing() -> None:
    """Gangs that divide the machine still pack: four 4-GPU gangs on two machines."""
    inv = inventory(
        *_bound("r0", "r1"),
        machine("idle-0", S.IDLE, alloc={GPU: 8000}, labels={RACK: "r2"}),
    )
    engine = Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
    result = engine.cycle(inv, table(*_gangs(4, 4)), {"c1"}, 0.0)
    assert result.rails.execute == []
    assert not result.phase2.unresolved
