"""A cycle runs with the cyclic collector paused and collects once, before resuming it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bigfleet.shard.engine.cycle import Engine
from tests.unit.engine.builders import S, inventory, machine, need, table


@pytest.fixture
def collections() -> Iterator[list[tuple[int, bool]]]:
    """Every collection started while the test runs: its generation, and whether the
    collector was on (a collection it started by itself, or one asked for with it on)."""
    started: list[tuple[int, bool]] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append((info["generation"], gc.isenabled()))

    was_enabled = gc.isenabled()
    gc.enable()
    gc.callbacks.append(note)
    try:
        yield started
    finally:
        gc.callbacks.remove(note)
        if not was_enabled:
            gc.disable()


def test_a_changed_cycle_collects_its_young_generations_before_resuming_the_collector(
    collections: list[tuple[int, bool]],
) -> None:
    # Enough machines and needs that the cycle allocates far more containers than the
    # collector's first threshold.
    inv = inventory(*(machine(f"idle-{i}", S.IDLE) for i in range(400)))
    demand = table(*(need(f"c{i % 4}", i % 7, 1 + i % 3) for i in range(200)))
    engine, reported = Engine(), {f"c{i}" for i in range(4)}
    gc.collect()
    collections.clear()

    engine.cycle(inv, demand, reported, now=0.0)

    # Its own collection ran while the collector was still paused. Resumed first, the
    # collector started one of its own at its first allocation over everything the
    # cycle had allocated, then the cycle's walked it all again. Other threads of the
    # test process may start collections of their own, so only the cycle's is asserted.
    assert (1, False) in collections
    assert (1, True) not in collections
    assert gc.isenabled()
