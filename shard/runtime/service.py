"""ShardService: one shard process, composed. It owns the cycle loop.

A cycle runs every interval, or earlier (at most once per `min_cycle_gap`)
when a roll-up changed demand; cycles never overlap and never wait on
execution: actions go to the executor's queue and the next cycle sees their
effect through reconcile.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from bigfleet import logs, probes
from bigfleet.fencing import advance_epoch
from bigfleet.shard import codec
from bigfleet.shard.engine.cycle import CycleResult, Engine
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.rails import RailSettings
from bigfleet.shard.engine.shortfall import ShortfallLedger
from bigfleet.shard.runtime.channels import Channels, SessionService
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.hints import Hints
from bigfleet.shard.runtime.instructions import InstructionHandler
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.ownership import Ownership
from bigfleet.shard.runtime.provider import ProviderClient
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.stats import p50_p99
from bigfleet.wire import GRPC_OPTIONS, MAX_MESSAGE_BYTES, shard_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ShardSettings:
    shard_id: str
    listen: str = "127.0.0.1:7780"
    providers: tuple[tuple[str, str], ...] = ()
    data_dir: Path = Path("./data")
    metrics_addr: str = "127.0.0.1:8780"  # "0" disables the HTTP listener
    cycle_interval_s: float = 10.0
    min_cycle_gap_s: float = 1.0
    execute_concurrency: int = 8
    bootstrap_timeout_s: float = 30.0
    execute_timeout_s: float = 30.0
    rails: RailSettings = field(default_factory=RailSettings)
    empty_rollup_guard: bool = True
    outbox_cap: int = 1024
    max_frame_bytes: int = MAX_MESSAGE_BYTES  # larger operator frames end their stream
    allowed_clusters: frozenset[str] = frozenset()
    incremental_reconcile: bool = False
    transfer_batch: int = 8  # machines handed to another shard per coordinator instruction
    advertise: str = ""  # the address reported to the coordinator; default: listen


class ShardService:
    def __init__(self, settings: ShardSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.epoch = advance_epoch(settings.data_dir / "epoch")  # persisted before any use
        self.registry = registry or CollectorRegistry()
        self.metrics = ShardMetrics(self.registry)
        self.channels = Channels(self.metrics, settings.outbox_cap)
        self._wake = asyncio.Event()
        self.state = ShardState(
            settings.shard_id,
            self.epoch,
            self.metrics,
            self.channels,
            quarantine_enabled=settings.empty_rollup_guard,
            on_demand=self._wake.set,
            ownership=Ownership.load(settings.data_dir / "ownership.json"),
        )
        self.providers = {
            name: ProviderClient(name, address, settings.shard_id, self.epoch)
            for name, address in settings.providers
        }
        self.reconciler = Reconciler(self.state, self.providers, settings.incremental_reconcile)
        self._inventory_frozen = False
        self.executor = Executor(
            self.state,
            self.providers,
            self.reconciler,
            concurrency=settings.execute_concurrency,
            bootstrap_timeout_s=settings.bootstrap_timeout_s,
            execute_timeout_s=settings.execute_timeout_s,
        )
        self.engine = Engine(settings.rails)
        self.instructions = InstructionHandler(
            self.state,
            self.reconciler,
            self.executor,
            batch=settings.transfer_batch,
            has_shortfall=lambda: len(self.engine.shortfalls) > 0,
            wake=self._wake.set,
        )
        self.hints = Hints()
        self.cycle_interval_s = settings.cycle_interval_s
        self.cycles = 0
        self.last: CycleResult | None = None
        self.last_cycle_at: float | None = None
        self.cycle_seconds: deque[float] = deque(maxlen=200)
        self.port = 0
        self.on_cycle: list[Callable[[ShardService], None]] = []
        self._update_pause_gauge()

    # -- runtime controls (the Shard resource's spec) -----------------------------------------

    def apply_controls(
        self,
        *,
        pause_acquisitions: bool,
        pause_reclaims: bool,
        dry_run: bool,
        cycle_interval_s: float,
    ) -> None:
        self.engine.settings = replace(
            self.engine.settings,
            pause_acquisitions=pause_acquisitions,
            pause_reclaims=pause_reclaims,
            dry_run=dry_run,
        )
        self.cycle_interval_s = cycle_interval_s
        self._update_pause_gauge()
        self._wake.set()
        log.info(
            "runtime controls applied",
            extra={
                "pause_acquisitions": pause_acquisitions,
                "pause_reclaims": pause_reclaims,
                "dry_run": dry_run,
                "cycle_interval_s": cycle_interval_s,
            },
        )

    def _update_pause_gauge(self) -> None:
        r = self.engine.settings
        self.metrics.actuation_paused.set(
            int(r.pause_acquisitions or r.pause_reclaims or r.dry_run)
        )

    # -- the loop --------------------------------------------------------------------------------

    async def cycle_once(self) -> CycleResult:
        start = time.perf_counter()
        await self.reconciler.run()
        if self.reconciler.ready and not self._inventory_frozen:
            # The inventory just loaded lives as long as the process: moving it out of
            # the collector's view keeps full collections from walking every machine
            # in the middle of a cycle.
            gc.collect()
            gc.freeze()
            self._inventory_frozen = True
        reconcile_s = time.perf_counter() - start
        compute_start = time.perf_counter()  # from here on nothing awaits
        result = self.engine.cycle(
            self.state.inventory, self.state.table, self.state.reported, time.monotonic()
        )
        self.executor.submit(result.rails.execute)
        emit_start = time.perf_counter()
        self.hints.emit(self.state.inventory, self.state.table, self.channels, time.monotonic())
        self.metrics.cycle_phase_duration.labels("emit").observe(time.perf_counter() - emit_start)
        self.cycles += 1
        self.last, self.last_cycle_at = result, time.time()
        self._record(result, reconcile_s, time.perf_counter() - start)
        self.metrics.cycle_compute.observe(time.perf_counter() - compute_start)
        for hook in self.on_cycle:
            hook(self)
        return result

    def _record(self, result: CycleResult, reconcile_s: float, total_s: float) -> None:
        m = self.metrics
        self.cycle_seconds.append(total_s)
        m.cycle_duration.observe(total_s)
        m.cycle_phase_duration.labels("reconcile").observe(reconcile_s)
        for phase in ("phase1", "phase2", "phase3"):
            m.cycle_phase_duration.labels(phase).observe(result.seconds.get(phase, 0.0))
        rails = result.rails
        for kind, n in rails.suppressed.items():
            m.actions_suppressed.labels(kind).inc(n)
        for kind, n in rails.dry_run.items():
            m.actions_dryrun.labels(kind).inc(n)
        m.reclaims_capped.inc(rails.capped)
        m.actions_deferred.inc(rails.truncated)
        m.inventory_machines.clear()
        counts: dict[tuple[str, str], int] = {}
        for machine in self.state.inventory.all():
            key = (machine.state.title, machine.capacity_type.name.lower())
            counts[key] = counts.get(key, 0) + 1
        for (state, capacity_type), n in counts.items():
            m.inventory_machines.labels(state, capacity_type).set(n)
        m.demand_needs.set(len(self.state.table.snapshot()))
        report = self.engine.shortfalls.report()
        m.shortfalls.set(len(report))
        aged = {"1-9": 0, "10-59": 0, "60-299": 0, "300+": 0}
        for s in report:
            bucket = (
                "1-9"
                if s.age_cycles < 10
                else "10-59"
                if s.age_cycles < 60
                else "60-299"
                if s.age_cycles < 300
                else "300+"
            )
            aged[bucket] += 1
        for bucket, n in aged.items():
            m.shortfalls_aged.labels(bucket).set(n)
        if report:
            top = report[0]
            log.warning(
                "shortfalls",
                extra={
                    "count": len(report),
                    "top_priority": top.profile.priority,
                    "top_deficit": dict(top.deficit),
                    "top_age_cycles": top.age_cycles,
                },
            )

    def cycle_percentiles(self) -> tuple[float, float]:
        """p50 and p99 of recent cycle durations, in seconds."""
        return p50_p99(self.cycle_seconds)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        last_start = -1e9
        while True:
            try:
                async with asyncio.timeout(self.cycle_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            gap = self.settings.min_cycle_gap_s - (time.monotonic() - last_start)
            if gap > 0:
                await asyncio.sleep(gap)  # rate limit: bursts collapse into one early cycle
            last_start = time.monotonic()
            with logs.bound(shard_id=self.settings.shard_id, epoch=self.epoch):
                try:
                    await self.cycle_once()
                except Exception:  # the loop must outlive any one cycle's failure
                    log.exception("cycle failed")

    async def start_server(self) -> grpc.aio.Server:
        server = grpc.aio.server(options=GRPC_OPTIONS)
        shard_pb2_grpc.add_ShardServicer_to_server(
            SessionService(
                self.channels,
                self.state,
                self.metrics,
                self.settings.allowed_clusters,
                self.settings.max_frame_bytes,
            ),
            server,
        )
        self.port = server.add_insecure_port(self.settings.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.listen}")
        await server.start()
        return server

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Serve until cancelled."""
        server = await self.start_server()
        runner = None
        if self.settings.metrics_addr != "0":
            host, _, port = self.settings.metrics_addr.rpartition(":")
            runner = await probes.start(
                host or "0.0.0.0",
                int(port),
                self.registry,
                lambda: self.reconciler.ready,
                "no provider reconcile has succeeded yet",
            )
        log.info(
            "shard serving",
            extra={"shard_id": self.settings.shard_id, "epoch": self.epoch, "port": self.port},
        )
        if started is not None:
            started.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.executor.run())
                group.create_task(self._loop())
                self._wake.set()  # the first cycle rebuilds the inventory at once
        finally:
            await server.stop(grace=1)
            if runner is not None:
                await runner.cleanup()
            for client in self.providers.values():
                await client.close()

    # What a coordinator report reads (shard.coordclient.ShardView).
    @property
    def shard_id(self) -> str:
        return self.settings.shard_id

    @property
    def inventory(self) -> Inventory:
        return self.state.inventory

    @property
    def shortfalls(self) -> ShortfallLedger:
        return self.engine.shortfalls

    @property
    def address(self) -> str:
        return self.settings.advertise or self.settings.listen

    @property
    def provider_address(self) -> str:
        return self.settings.providers[0][1] if self.settings.providers else ""

    def status(self) -> dict[str, object]:
        """The Shard resource's status, from the last cycle."""
        by_state = self.state.inventory.count_by_state()
        p50, p99 = self.cycle_percentiles()
        connected = self.channels.connected()
        report = self.engine.shortfalls.report(limit=20)
        status: dict[str, object] = {
            "epoch": self.epoch,
            "cycle": self.cycles,
            "cycleP50Seconds": round(p50, 6),
            "cycleP99Seconds": round(p99, 6),
            "inventory": {
                "total": len(self.state.inventory),
                **{s.name.lower(): n for s, n in by_state.items() if s != MachineState.UNSPECIFIED},
            },
            "demand": {
                "needs": len(self.state.table.snapshot()),
                "clusters": len(self.state.table.clusters()),
            },
            "shortfallCount": len(self.engine.shortfalls),
            "shortfalls": [
                {
                    "cluster": "",
                    "priority": s.profile.priority,
                    "ageCycles": s.age_cycles,
                    "requirements": ", ".join(
                        f"{r.key} {r.operator.value} {','.join(r.values)}".strip()
                        for r in s.profile.requirements
                    ),
                    "deficit": codec.vector_to_wire(s.deficit),
                }
                for s in report
            ],
            "connectedClusters": connected,
            "connectedClusterCount": len(connected),
        }
        if self.last_cycle_at is not None:
            status["lastCycleTime"] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_cycle_at)
            )
        return status
