"""The engine decides in its own thread: while a cycle runs, the shard goes on serving
operator streams, and what the cycle reads holds still until it ends. A short cycle runs
on the event loop instead."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from bigfleet.shard.engine.cycle import CycleResult
from bigfleet.shard.runtime.service import INLINE_BELOW_ITEMS
from tests.component.harness import eventually, need, rig


async def test_streams_are_served_while_a_cycle_decides(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=2) as r:
        shard = await r.start_shard()  # threads every cycle, however small the shard
        await eventually(lambda: shard.cycles > 0, what="a first cycle")
        entered, release = threading.Event(), threading.Event()
        decide = shard.engine.cycle

        def held(*args: object) -> CycleResult:  # runs in the engine's thread
            entered.set()
            release.wait(30)
            return decide(*args)  # type: ignore[arg-type]

        shard.engine.cycle = held  # type: ignore[method-assign]
        try:
            assert await asyncio.to_thread(entered.wait, 10), "no cycle began"
            assert shard.state.deciding
            late = r.operator("late")
            late.start()
            late.rollup(need(8))
            # Hello and roll-up acknowledged while the cycle is still held...
            await eventually(
                lambda: any(f.ack.echo == "rollup" for f in late.frames("ack")),
                what="the roll-up acknowledged during the cycle",
            )
            assert shard.state.deciding
            assert shard.state.table.rows("late") == ()  # ...and not yet in the cycle's view
        finally:
            shard.engine.cycle = decide  # type: ignore[method-assign]
            release.set()
        await eventually(lambda: len(shard.state.table.rows("late")) == 1, what="committed")
        await eventually(
            lambda: any(m.cluster == "late" for m in r.fleet.list().machines),
            what="the late cluster served by a later cycle",
        )
        await late.close()


async def test_a_small_shard_decides_on_the_event_loop(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=2) as r:
        shard = await r.start_shard()
        shard.inline_below_items = INLINE_BELOW_ITEMS  # as a shard runs: a tiny one on the loop
        threads: list[str] = []
        decide = shard.engine.cycle

        def watched(*args: object) -> CycleResult:
            threads.append(threading.current_thread().name)
            return decide(*args)  # type: ignore[arg-type]

        shard.engine.cycle = watched  # type: ignore[method-assign]
        await eventually(lambda: len(threads) >= 2, what="two cycles")
        shard.inline_below_items = 2  # two machines: now a shard to thread
        await eventually(lambda: len(threads) >= 4, what="two more cycles")
        shard.engine.cycle = decide  # type: ignore[method-assign]
        assert threads[0] == threads[1] == threading.main_thread().name
        assert threads[-1].startswith("engine")
