"""What the run looked like over time: one sample every poll, from install to the end
of the soak, kept as `timeline.json` and drawn as `timeline.png`.

A sample counts the load's Pods (bound and not), its CapacityRequests, and what
the shard reports (Configured machines, shortfalls, acquisitions so far). While
the shard cannot be read (killed, restarting) its figures repeat the last ones
read, and the faults panel shows the action under way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bigfleet import plot
from bigfleet.scaletest.gates import ACQUISITIONS
from bigfleet.scaletest.load import Census
from bigfleet.scaletest.scrape import Snapshot

log = logging.getLogger(__name__)


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
        self.skipped = 0

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
        """Sample until cancelled. A sample that cannot be taken (an API server busy
        restarting, say) is skipped: the timeline illustrates, it does not judge."""
        self._began = time.monotonic()
        while True:
            try:
                self.record(await census(), await shard())
            except Exception as err:
                self.skipped += 1
                log.debug("timeline sample skipped", extra={"error": str(err)})
            await asyncio.sleep(every_s)

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
