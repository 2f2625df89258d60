"""What the run looked like over time: one sample every poll, from install to the end
of the soak, kept as `timeline.json` and drawn as `timeline.png`. The samples are
also what the runner judges progress by (`next`).

A sample counts the load's Pods (bound and not), its CapacityRequests, and what
the shard reports (Configured machines, shortfalls, acquisitions so far). While
the shard cannot be read (killed, restarting) its figures repeat the last ones
read, and the faults panel shows the action under way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bigfleet import plot
from bigfleet.scaletest.gates import ACQUISITIONS
from bigfleet.scaletest.load import Census
from bigfleet.scaletest.scrape import Snapshot


@dataclass(frozen=True)
class Sample:
    at_s: float  # since install
    phase: str  # settle | soak
    pods: int
    bound: int
    requests: int
    configured: float
    shortfalls: float
    acquisitions: float
    fault: str  # the action under way, "" when none


class Timeline:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.phase = "settle"
        self.fault = ""
        self._began = time.monotonic()
        self._shard = (0.0, 0.0, 0.0)  # the last figures read from the shard
        # The shard's action counters start again at 0 when it restarts; what the
        # earlier processes counted is kept here so the line only grows.
        self._acquired_before, self._acquired_last = 0.0, 0.0
        self._taken = asyncio.Condition()
        self._latest: Census | None = None
        self._failure: Exception | None = None

    def record(self, census: Census, shard: Snapshot) -> None:
        configured = shard.total("shard", "bigfleet_shard_inventory_machines", state="Configured")
        shortfalls = shard.total("shard", "bigfleet_shard_shortfalls")
        if configured is not None and shortfalls is not None:
            acquired = sum(
                shard.total("shard", "bigfleet_shard_actions_total", kind=kind) or 0
                for kind in ACQUISITIONS
            )
            if acquired < self._acquired_last:  # a new shard process
                self._acquired_before += self._acquired_last
            self._acquired_last = acquired
            self._shard = (configured, shortfalls, self._acquired_before + acquired)
        self.samples.append(
            Sample(
                round(time.monotonic() - self._began, 1),
                self.phase,
                census.pods,
                len(census.bound),
                census.requests,
                *self._shard,
                self.fault,
            )
        )

    async def follow(
        self, census: Callable[[], Awaitable[Census]], shard: Callable[[], Awaitable[Snapshot]],
        every_s: float,
    ) -> None:  # fmt: skip
        """Take a census and read the shard every `every_s` until cancelled. This is
        the run's only census stream (the runner waits on `next`): on a busy API
        server two would slow each other and everything else down."""
        self._began = time.monotonic()
        while True:
            try:
                taken = await census()
                self.record(taken, await shard())
                self._latest, self._failure = taken, None
            except Exception as err:  # the census's own retries gave up
                self._failure = err
            async with self._taken:
                self._taken.notify_all()
            await asyncio.sleep(every_s)

    async def next(self) -> Census:
        """The next census taken; raises what made it fail."""
        async with self._taken:
            await self._taken.wait()
        if self._failure is not None or self._latest is None:
            raise self._failure or RuntimeError("no census taken")
        return self._latest

    def write(self, output: Path, title: str = "") -> list[str]:
        """timeline.json, and timeline.png where matplotlib is installed; what was not
        written, and why."""
        (output / "timeline.json").write_text(
            json.dumps([asdict(s) for s in self.samples], indent=0) + "\n"
        )
        if not self.samples:
            return ["timeline.png: no sample was taken"]
        try:
            plot.require()
        except plot.PlotUnavailable as err:
            return [f"timeline.png: {err}"]
        self.draw(output / "timeline.png", title)
        return []

    def draw(self, path: Path, title: str = "") -> None:
        s = self.samples
        faults = sorted({x.fault for x in s if x.fault})
        soaking = [1.0 if x.phase == "soak" else 0.0 for x in s]
        plot.draw(
            path,
            title or "scale test",
            "seconds since the load was installed",
            [x.at_s for x in s],
            [
                plot.Panel(
                    "Pods",
                    {
                        "bound": [x.bound for x in s],
                        "not bound": [x.pods - x.bound for x in s],
                        "CapacityRequests": [x.requests for x in s],
                    },
                ),
                plot.Panel("machines", {"Configured": [x.configured for x in s]}),
                plot.Panel(
                    "acquisitions so far, shortfalls",
                    {
                        "acquisitions": [x.acquisitions for x in s],
                        "shortfalls": [x.shortfalls for x in s],
                    },
                ),
                plot.Panel(
                    "soak and faults",
                    {"soaking": soaking}
                    | {f: [1.0 if x.fault == f else 0.0 for x in s] for f in faults},
                    stacked=False,
                ),
            ],
        )
