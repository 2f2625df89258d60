"""The bench-hot fleet has the reference's co-located shape; settling stops or fails loudly.
The fixed shapes refuse sizes; the JSON names the shape and the engine measured."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigfleet.bench import hot_fleet
from bigfleet.bench.settle import NotSettled, settle
from bigfleet.cli import main
from bigfleet.shard import engine
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.profile import Profile

from .engine.builders import machine

S = MachineState


def test_the_hot_fleet_has_the_reference_shape() -> None:
    rng = random.Random(1)
    inv = hot_fleet.build_inventory(rng)
    table = hot_fleet.build_demand(rng)
    assert len(inv) == 18_000
    assert inv.count_by_state() == {S.CONFIGURED: 5_000, S.IDLE: 1_000, S.SPECULATIVE: 12_000}
    machines = inv.all()
    assert {m.zone for m in machines} == {hot_fleet.ZONE}
    racks = Counter(
        m.instance_type for m in {m.labels[hot_fleet.RACK_KEY]: m for m in machines}.values()
    )
    assert set(racks.values()) == {hot_fleet.RACKS}
    needs = table.snapshot()
    assert len(needs) == 2_580
    gangs = [n for n in needs if n.profile.same is not None]
    assert len(gangs) == 2_540
    assert {len(table.rows(c)) for c in table.clusters()} == {129}
    sizes = Counter(n.aggregate["cpu"] // n.min_unit["cpu"] for n in gangs)
    assert sizes == {4: 20 * 95, 5: 20 * 32}


def _one_cpu_need(cluster: str) -> Need:
    return Need(cluster=cluster, profile=Profile((), (), 100, 0, 0), aggregate={"cpu": 1000},
                min_unit={"cpu": 1000})  # fmt: skip


def test_settling_applies_rounds_until_one_decides_nothing() -> None:
    inv = Inventory()
    for i in range(3):
        inv.upsert(machine(f"i{i}", S.IDLE, alloc={"cpu": 1000}), now=0.0)
    table = NeedsTable()
    table.replace("c1", [_one_cpu_need("c1")])
    settled = settle(Engine(), inv, table, {"c1"}, bound=5)
    assert settled.rounds == 1
    assert inv.count_by_state() == {S.CONFIGURED: 1, S.IDLE: 2}


def test_settling_fails_loudly_when_the_fleet_still_acts() -> None:
    inv = Inventory()
    inv.upsert(machine("i0", S.IDLE, alloc={"cpu": 1000}), now=0.0)
    table = NeedsTable()
    table.replace("c1", [_one_cpu_need("c1")])
    with pytest.raises(NotSettled, match=r"within 0 rounds.*1 bootstrap"):
        settle(Engine(), inv, table, {"c1"}, bound=0)


@pytest.mark.parametrize("shape", ["bench-hot", "m11"])
def test_a_fixed_shape_refuses_sizes_it_fixes_itself(shape: str) -> None:
    result = CliRunner().invoke(
        main, ["bench", "engine", "--shape", shape, "--machines", "5", "--clusters", "3"]
    )
    assert result.exit_code == 2
    assert f"--shape {shape} fixes its own fleet; drop machines, clusters" in result.output


def test_the_default_shape_writes_its_name_and_engine_into_the_json(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    result = CliRunner().invoke(
        main,
        ["bench", "engine", "--machines", "400", "--needs", "30", "--clusters", "3",
         "--cycles", "2", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["shape"] == "default"
    assert written["engine_build"] == engine.BUILD
    assert f"decision engine: {engine.BUILD}" in result.output
    assert f"settled after {written['settled_rounds']} rounds" in result.output


def test_the_default_shape_fails_loudly_when_its_fleet_does_not_settle() -> None:
    result = CliRunner().invoke(
        main,
        ["bench", "engine", "--machines", "2000", "--needs", "200", "--clusters", "4",
         "--colocated", "0.5", "--cycles", "2", "--settle-rounds", "1"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "did not settle under constant demand within 1 rounds" in result.output
