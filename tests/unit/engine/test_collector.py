"""A cycle runs with the cyclic collector paused and collects once, at its end."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bigfleet.shard.engine.cycle import Engine
from tests.unit.engine.builders import S, inventory, machine, need, table


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection started while the test runs."""
    started: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.enable()
    gc.callbacks.append(note)
    try:
        yield started
    finally:
        gc.callbacks.remove(note)
        if not was_enabled:
            gc.disable()


def test_a_changed_cycle_collects_once_and_leaves_nothing_for_the_collector_to_start(
    collections: list[int],
) -> None:
    # Enough machines and needs that the cycle allocates far more containers than the
    # collector's first threshold.
    inv = inventory(*(machine(f"idle-{i}", S.IDLE) for i in range(400)))
    demand = table(*(need(f"c{i % 4}", i % 7, 1 + i % 3) for i in range(200)))
    collections.clear()

    Engine().cycle(inv, demand, {f"c{i}" for i in range(4)}, now=0.0)

    # Only the collection the cycle asks for: none started by the allocations it made,
    # during the cycle or at the first allocation after the collector came back on.
    assert collections == [1]
    assert gc.isenabled()
    assert gc.get_count()[0] < gc.get_threshold()[0]
