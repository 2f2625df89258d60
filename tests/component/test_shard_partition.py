"""A shard cut off from its provider keeps cycling on the inventory it last listed
(a partition swallows bytes, so only the List deadline would ever notice), and its
view is fresh again once the link heals."""

from __future__ import annotations

from pathlib import Path

from bigfleet.controlplane.proxy import LoopbackProxy
from tests.component.harness import eventually, rig


async def test_a_partitioned_provider_does_not_stop_the_cycles(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=4) as r:
        link = LoopbackProxy(r.provider_address)
        link.start()
        try:
            r.provider_address = link.address
            shard = await r.start_shard()
            await eventually(lambda: len(shard.state.inventory) == 4, 15, "first listing")
            link.cut()
            cycles = shard.cycles
            await eventually(lambda: shard.cycles >= cycles + 3, 30, "cycles while cut off")
            assert shard.metrics.reconcile_overdue._value.get() >= 3
            assert len(shard.state.inventory) == 4  # what it knew stays
            healed_at = shard.clock.monotonic()
            link.heal()
            await eventually(
                lambda: (shard.last_reconciled_at or 0) > healed_at,
                30,
                "a complete pass after healing",
            )
        finally:
            link.stop()
