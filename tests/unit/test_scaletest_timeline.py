"""The scale test's timeline: one sample per poll, the shard's figures carried over
while it cannot be read, written as JSON and drawn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bigfleet.scaletest.load import Census
from bigfleet.scaletest.scrape import Snapshot, parse
from bigfleet.scaletest.timeline import Timeline

SHARD_METRICS = """\
bigfleet_shard_inventory_machines{state="Configured",capacity_type="on_demand"} 7
bigfleet_shard_inventory_machines{state="Configured",capacity_type="spot"} 2
bigfleet_shard_inventory_machines{state="Idle",capacity_type="spot"} 5
bigfleet_shard_shortfalls 1
bigfleet_shard_actions_total{kind="Bootstrap"} 6
bigfleet_shard_actions_total{kind="Provision"} 3
bigfleet_shard_actions_total{kind="Reclaim"} 4
"""


RESTARTED = """\
bigfleet_shard_inventory_machines{state="Configured",capacity_type="spot"} 9
bigfleet_shard_shortfalls 0
bigfleet_shard_actions_total{kind="Provision"} 1
"""


def _census(pods: int, bound: int) -> Census:
    return Census(pods=pods, bound={f"c1/p{i}": "n" for i in range(bound)}, requests=pods)


def test_samples_carry_the_shards_figures_over_while_it_is_down(tmp_path: Path) -> None:
    timeline = Timeline()
    timeline.record(_census(10, 4), Snapshot({"shard": parse(SHARD_METRICS)}))
    timeline.phase, timeline.fault = "soak", "kill shard"
    timeline.record(_census(10, 9), Snapshot(failed={"shard": "connection refused"}))
    first, second = timeline.samples
    assert (first.configured, first.shortfalls, first.acquisitions) == (9, 1, 9)
    assert (second.configured, second.shortfalls, second.acquisitions) == (9, 1, 9)
    assert (second.bound, second.phase, second.fault) == (9, "soak", "kill shard")
    # A restarted shard counts from 0 again; the line keeps what the old one counted.
    timeline.record(_census(10, 9), Snapshot({"shard": parse(RESTARTED)}))
    assert timeline.samples[-1].acquisitions == 9 + 1

    assert timeline.write(tmp_path) == []
    written = json.loads((tmp_path / "timeline.json").read_text())
    assert [s["bound"] for s in written] == [4, 9, 9]
    png = (tmp_path / "timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_a_run_without_samples_says_why_there_is_no_chart(tmp_path: Path) -> None:
    assert Timeline().write(tmp_path) == ["timeline.png: no sample was taken"]
    assert json.loads((tmp_path / "timeline.json").read_text()) == []


async def test_the_runner_waits_on_the_samplers_census_and_hears_its_failure() -> None:
    timeline = Timeline()
    taken = [_census(3, 1), _census(3, 3)]

    async def census() -> Census:
        if not taken:
            raise ConnectionError("the API server went away")
        return taken.pop(0)

    async def shard() -> Snapshot:
        return Snapshot({"shard": parse(SHARD_METRICS)})

    sampling = asyncio.create_task(timeline.follow(census, shard, every_s=0.01))
    try:
        seen = [len((await timeline.next()).bound) for _ in range(2)]
        with pytest.raises(ConnectionError):
            await timeline.next()
    finally:
        sampling.cancel()
    assert seen in ([1, 3], [3, 3])  # a waiter joins at whichever sample comes next
    assert len(timeline.samples) == 2
