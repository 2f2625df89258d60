"""SimShard: the shard's own runtime pieces, driven one cycle at a time on simulated time.

Nothing here carries out an action. Each cycle does what the shard's cycle
loop does, with the shard's own parts: the Reconciler lists the fake fleet
through the in-process provider (same fenced calls and wire messages as
gRPC), ShardState takes roll-ups and every inventory write, the engine
decides, and the Executor's workers carry the actions out. The simulator only
adds what a deployment would: the clock, the operators, and pacing.

A cycle starts on a multiple of the interval, waits (in simulated time) until
the actions it queued have ended or the next cycle is due, reconciles again
so the trace shows their effect, and lets the operators read their streams.
An action that outlasts the interval goes on into the next cycle, as in a
running shard. Runs are synchronous for callers: `cycle()` drives the loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.inprocess import InProcessProvider
from bigfleet.shard.engine.cycle import CycleResult, Engine
from bigfleet.shard.engine.decision.actions import Action
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.outbox import DEFAULT_CAP
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.sim import simtime
from bigfleet.sim.operators import SimOperators, StubBlobs
from bigfleet.supervise import Loops
from bigfleet.wire import capacity_pb2

CYCLE_INTERVAL_S = 10.0
EPOCH = 1  # a throw-away fencing epoch: the simulated shard never restarts
# Workers, and so a queue of twice as many: enough that no scenario's cycle overflows it
# (a real shard drops the overflow and re-derives it next cycle; the trace would show that).
CONCURRENCY = 64
# Reconcile runs twice a cycle here (before deciding, and after the actions for the trace).
# Full passes find only machines gone from the provider, which the fake's machines never are
# unless a test removes them; a fifth as often as a shard's default keeps them cheap.
FULL_RECONCILE_EVERY = 50


@dataclass
class Tally:
    """What the loop did, for reports: actions the executor took on, by kind, in the whole
    run and in the last cycle."""

    actions: Counter[str] = field(default_factory=Counter)
    last_cycle: Counter[str] = field(default_factory=Counter)
    cycles: int = 0


class SimShard:
    def __init__(
        self,
        fleet_config: FleetConfig,
        *,
        shard_id: str,
        settings: EngineSettings | None = None,
        blob_dwell_s: float = 0.0,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._runner, self.clock = simtime.runner()
        # The fake's transitions complete on the same simulated seconds as the shard's.
        self.fleet = fleet_config.build(clock=self.clock.monotonic)
        self.shard_id = shard_id
        self.metrics = ShardMetrics(CollectorRegistry())
        self.channels = Channels(self.metrics, DEFAULT_CAP, clock=self.clock)
        self.state = ShardState(shard_id, EPOCH, self.metrics, self.channels, clock=self.clock)
        self.provider = InProcessProvider(self.fleet, shard_id=shard_id, epoch=EPOCH)
        providers = {self.fleet.name: self.provider}
        self.reconciler = Reconciler(self.state, providers, full_every=FULL_RECONCILE_EVERY)
        self.operators = SimOperators(self.channels)
        self.blobs = StubBlobs(blob_dwell_s)
        self.executor = Executor(
            inventory=self.state.inventory,
            record=self.state.record,
            gate=self.state,
            in_flight=self.state.in_flight,
            channels=self.channels,
            metrics=self.metrics,
            providers=providers,
            owners=self.reconciler.owner,
            clock=self.clock,
            concurrency=concurrency,
            loops=Loops(clock=self.clock, jitter=lambda: 0.5),  # no randomness in restarts
            blobs=self.blobs,
        )
        # Rails off unless asked: the scenario's expectations count every decided action.
        self.engine = Engine(settings or EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)))
        self.tally = Tally()
        self.last: CycleResult | None = None
        self._workers: asyncio.Task[None] | None = None

    # -- the synchronous face ----------------------------------------------------------------

    def rollup(self, message: capacity_pb2.ClusterCapacityNeeds) -> None:
        """Take a roll-up as the shard's Session would, after the operator dialled in."""
        self.operators.connect(message.cluster_id)
        self.state.apply_rollup(message)

    def cycle(self) -> list[Action]:
        """One decision cycle; returns the actions the rails let through, in order."""
        return self._runner.run(self._cycle())

    def close(self) -> None:
        """Stop the executor's workers and close the loop."""
        self._runner.close()
        if not self.clock.loop.is_closed():  # never ran a cycle: the runner never took it
            self.clock.loop.close()

    def __enter__(self) -> SimShard:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- one cycle ---------------------------------------------------------------------------

    async def _cycle(self) -> list[Action]:
        if self._workers is None:
            self._workers = asyncio.create_task(self.executor.run())
        start = self.clock.monotonic()
        due = start + CYCLE_INTERVAL_S
        await self.reconciler.run()
        result = self.engine.cycle(
            self.state.inventory, self.state.table, self.state.reported, start
        )
        self.last = result
        busy = set(self.state.in_flight)
        self.executor.submit(result.rails.execute)
        taken: Counter[str] = Counter(
            action.kind.value  # taken on, not deduplicated
            for action in result.rails.execute
            if action.machine_id in self.state.in_flight and action.machine_id not in busy
        )
        self.tally.actions.update(taken)
        self.tally.last_cycle = taken
        try:
            async with asyncio.timeout_at(due):  # the loop's time is the simulated time
                await self.executor.drained()
        except TimeoutError:
            pass  # still running: it goes on into the next cycle
        await self.reconciler.run()
        await self.operators.pump()
        await self.clock.sleep(due - self.clock.monotonic())
        self.tally.cycles += 1
        return result.rails.execute

    # -- what reports read -------------------------------------------------------------------

    @property
    def inventory(self) -> Inventory:
        return self.state.inventory

    def state_summary(self) -> dict[str, object]:
        """The trace's inventory summary (validation.md §1.5 key order)."""
        inventory = self.state.inventory
        by_state = dict(sorted((s.title, n) for s, n in inventory.count_by_state().items()))
        summary: dict[str, object] = {"total": len(inventory), "by_state": by_state}
        per_cluster = inventory.configured_per_cluster()
        if per_cluster:
            summary["configured_per_cluster"] = dict(sorted(per_cluster.items()))
        return summary

    def cost_per_hour(self) -> float:
        """Hourly price of every machine holding hardware."""
        return sum(
            m.price_per_hour
            for m in self.state.inventory.all()
            if m.state not in (MachineState.SPECULATIVE, MachineState.FAILED)
        )
