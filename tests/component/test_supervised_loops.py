"""The shard's probes over real HTTP: /readyz follows the providers, /healthz its loops.

/readyz holds while the last complete provider reconcile is within the window (1 s here),
so it turns 503 while the provider is unreachable and 200 once it is back. /healthz turns
503 naming the cycle loop while every cycle fails (a broken engine), without taking the
process down, and 200 again once cycles succeed for a while.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp

from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.service import ShardService, ShardSettings
from bigfleet.supervise import Loops
from tests.component.harness import Rig, eventually, rig


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_shard(r: Rig, port: int, **service: object) -> ShardService:
    settings = ShardSettings(
        shard_id="shard-test",
        listen="127.0.0.1:0",
        providers=(("fake", r.provider_address),),
        data_dir=r.data_dir,
        metrics_addr=f"127.0.0.1:{port}",
        cycle_interval_s=0.1,
        min_cycle_gap_s=0.02,
        engine=EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)),
    )
    shard = ShardService(settings, **service)  # type: ignore[arg-type]
    started = asyncio.Event()
    r.shard, r.shard_task = shard, asyncio.create_task(shard.run(started))
    await asyncio.wait_for(started.wait(), 10)
    return shard


class Probes:
    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{port}"
        self.last: dict[str, tuple[int, str]] = {}

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base + path) as response:
            self.last[path] = (response.status, await response.text())
        return self.last[path]

    async def until(self, path: str, status: int, timeout_s: float = 30.0) -> str:
        found: list[str] = []

        async def check() -> None:
            code, text = await self.get(path)
            if code == status:
                found.append(text)

        deadline = asyncio.get_running_loop().time() + timeout_s
        while not found:
            await check()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{path} did not answer {status}: {self.last.get(path)}")
            await asyncio.sleep(0.05)
        return found[0]


async def test_readyz_follows_the_provider_and_healthz_stays_up(tmp_path: Path) -> None:
    port = free_port()
    async with rig(tmp_path, idle=2) as r, aiohttp.ClientSession() as http:
        shard = await start_shard(r, port, ready_window_s=1.0)
        probes = Probes(http, port)
        await probes.until("/readyz", 200)
        await r.stop_provider()
        text = await probes.until("/readyz", 503)
        assert "no provider reconcile has succeeded for" in text
        assert await probes.get("/healthz") == (200, "ok")  # the loops are fine
        await r.restart_provider()
        await probes.until("/readyz", 200)
        assert r.shard_task is not None and not r.shard_task.done()
        assert shard.cycles > 0


async def test_healthz_names_a_dead_cycle_loop_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    async with rig(tmp_path, idle=2) as r, aiohttp.ClientSession() as http:
        shard = await start_shard(r, port)
        shard.loops.initial_backoff_s, shard.loops.max_backoff_s = 0.02, 0.05
        shard.loops.dead_after_s, shard.loops.healthy_after_s = 0.5, 0.5
        probes = Probes(http, port)
        await probes.until("/readyz", 200)
        assert await probes.get("/healthz") == (200, "ok")
        working = shard.engine.cycle

        def broken(*_: object, **__: object) -> object:
            raise RuntimeError("engine bug")

        shard.engine.cycle = broken  # type: ignore[method-assign,assignment]
        text = await probes.until("/healthz", 503)
        assert text.startswith("loop shard_cycle crashing for")
        _, metrics = await probes.get("/metrics")
        restarts = [
            line
            for line in metrics.splitlines()
            if line.startswith('bigfleet_loop_restarts_total{loop="shard_cycle"}')
        ]
        assert restarts and float(restarts[0].split()[-1]) >= 2
        # Reconcile runs before the engine: the shard still sees its providers.
        assert (await probes.get("/readyz"))[0] == 200
        assert r.shard_task is not None and not r.shard_task.done()  # not taken down

        cycles = shard.cycles
        shard.engine.cycle = working  # type: ignore[method-assign]
        await eventually(lambda: shard.cycles > cycles, what="cycles again")
        await probes.until("/healthz", 200)


async def test_a_shard_with_its_own_loops_counts_restarts_in_its_registry(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    async with rig(tmp_path, idle=1) as r:
        shard = await start_shard(r, free_port(), registry=registry, loops=Loops(registry))
        await eventually(lambda: shard.cycles > 0, what="a cycle")
        value = registry.get_sample_value("bigfleet_loop_restarts_total", {"loop": "shard_cycle"})
        assert value == 0.0
