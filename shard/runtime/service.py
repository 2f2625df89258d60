"""ShardService: one shard process, composed. It owns the cycle loop.

A cycle runs every interval, or earlier (at most once per `min_cycle_gap`)
when a roll-up changed demand; cycles never overlap and never wait on
execution: actions go to the executor's queue and the next cycle sees their
effect through reconcile.

The engine decides in a thread of its own, so the event loop goes on serving
every operator stream, probe and provider call while it does; the state it
reads holds still meanwhile (ShardState: writers wait, roll-ups are
acknowledged and committed when the cycle ends). A small shard's cycles run
on the loop instead (ADR 0024).

The cycle loop and the executor's workers run under `bigfleet.supervise.Loops`:
a failing cycle is logged, counted and restarted with backoff, and /healthz
fails while a loop is dead or stuck. /readyz holds while the last complete
provider reconcile (every provider listed) is recent: within `ready_window_s`,
by default 3 x max(cycle interval, 10 s).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
from prometheus_client import CollectorRegistry

from bigfleet import logs, probes, tls
from bigfleet.clock import REAL_CLOCK, Clock, woken
from bigfleet.fencing import advance_epoch
from bigfleet.shard.engine import BUILD as ENGINE_BUILD
from bigfleet.shard.engine.cycle import CycleResult, Engine
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.shortfall import ShortfallLedger
from bigfleet.shard.runtime.channels import (
    Channels,
    SessionService,
    session_policy,
    session_server_options,
)
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.hints import Hints
from bigfleet.shard.runtime.inspect import ShardReadService, VerdictShelf
from bigfleet.shard.runtime.instructions import InstructionHandler
from bigfleet.shard.runtime.metrics import ShardMetrics, record_cycle
from bigfleet.shard.runtime.ownership import Ownership
from bigfleet.shard.runtime.provider import CapacityProvider, ProviderClient
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState

# Re-exported: whoever composes a ShardService names its settings from here too.
from bigfleet.shard.settings import ShardSettings as ShardSettings
from bigfleet.shard.settings import load_credentials
from bigfleet.supervise import Loops, beat
from bigfleet.wire import provider_pb2, shard_pb2_grpc, shardread_pb2_grpc

log = logging.getLogger(__name__)
RECONCILE_WAIT_MIN_S = 1.0  # a cycle waits this long at least for its provider pass
READY_WINDOW_CYCLES = 3  # /readyz: a complete reconcile within this many cycle intervals...
READY_WINDOW_MIN_S = 10.0  # ...of at least this long each
STUCK_MIN_S = 120.0  # /healthz: the cycle loop completes a cycle at least this often...
STUCK_CYCLES = 5  # ...or within this many cycle intervals, whichever is longer
# A shard with fewer machines plus needs than this decides on the event loop: its cycles
# take milliseconds, which stop the loop for less than handing the interpreter lock back and
# forth with a busy loop stretches them (several-fold, ADR 0024). A cycle's cost follows
# these sizes; the last cycle's time would not do, since a reused cycle is short at any size.
INLINE_BELOW_ITEMS = 5_000
RECONCILE_SLICE = 1_000  # provider records applied between two turns of the event loop


class _Listed:
    """A provider as reconcile sees it: a successful List is reported to `listed`."""

    def __init__(self, name: str, client: CapacityProvider, listed: Callable[[str], None]):
        self.name, self.client, self.listed = name, client, listed

    async def list(self, since_revision: bytes = b"") -> provider_pb2.MachineList:
        listing = await self.client.list(since_revision)
        self.listed(self.name)
        return listing

    async def create(self, machine_id: str) -> provider_pb2.TransitionAck:
        return await self.client.create(machine_id)

    async def configure(
        self, machine_id: str, cluster: str, blob: bytes, metadata: dict[str, str]
    ) -> provider_pb2.TransitionAck:
        return await self.client.configure(machine_id, cluster, blob, metadata)

    async def drain(self, machine_id: str, grace_seconds: int) -> provider_pb2.TransitionAck:
        return await self.client.drain(machine_id, grace_seconds)

    async def delete(self, machine_id: str) -> provider_pb2.TransitionAck:
        return await self.client.delete(machine_id)

    async def get(self, machine_id: str) -> provider_pb2.Machine:
        return await self.client.get(machine_id)


class ShardService:
    def __init__(
        self,
        settings: ShardSettings,
        registry: CollectorRegistry | None = None,
        clock: Clock = REAL_CLOCK,
        *,
        loops: Loops | None = None,
        ready_window_s: float | None = None,
    ) -> None:
        """`loops` supervises the long-lived loops (default: one on `registry` and `clock`);
        `ready_window_s` is how recent the last complete provider reconcile must be for
        /readyz (default: 3 x max(cycle interval, 10 s), following live interval changes)."""
        self.settings = settings
        self.clock = clock
        self.ready_window_s = ready_window_s
        # One identity for the process: serves Sessions, presented on every dial. Loaded (and
        # its identity checked) before the epoch moves, so a refused start leaves no trace.
        self.credentials = load_credentials(settings)
        self.epoch = advance_epoch(settings.data_dir / "epoch")  # persisted before any use
        self.registry = registry or CollectorRegistry()
        self.metrics = ShardMetrics(self.registry)
        self.loops = loops or Loops(self.registry, clock)
        self.channels = Channels(
            self.metrics,
            settings.outbox_cap,
            max_clusters=settings.max_clusters,
            retention_s=settings.cluster_retention_s,
            clock=clock,
        )
        self._wake = asyncio.Event()
        self.state = ShardState(
            settings.shard_id,
            self.epoch,
            self.metrics,
            self.channels,
            quarantine_enabled=settings.empty_rollup_guard,
            max_needs_per_rollup=settings.max_needs_per_rollup,
            on_demand=self._wake.set,
            ownership=Ownership.load(settings.data_dir / "ownership.json"),
            clock=clock,
        )
        self.providers = {
            name: ProviderClient(
                name, address, settings.shard_id, self.epoch, credentials=self.credentials
            )
            for name, address in settings.providers
        }
        # Reconcile lists through `_Listed`: a pass in which every provider answered is a
        # complete reconcile, which is what readiness counts.
        self._listed: set[str] = set()
        self.last_reconciled_at: float | None = None  # clock.monotonic() of the last complete one
        self.reconciler = Reconciler(
            self.state,
            {n: _Listed(n, c, self._listed.add) for n, c in self.providers.items()},
            settings.incremental_reconcile,
            yield_every=RECONCILE_SLICE,
        )
        self._inventory_frozen = False
        self._reconciling: asyncio.Task[None] | None = None  # the provider pass under way
        self._overdue = False  # the last cycle went ahead without its provider pass
        self.executor = Executor(
            inventory=self.state.inventory,
            record=self.state.record,
            gate=self.state,
            in_flight=self.state.in_flight,
            channels=self.channels,
            metrics=self.metrics,
            providers=self.providers,
            owners=self.reconciler.owner,
            clock=clock,
            concurrency=settings.execute_concurrency,
            bootstrap_timeout_s=settings.bootstrap_timeout_s,
            execute_timeout_s=settings.execute_timeout_s,
            loops=self.loops,
        )
        self.engine = Engine(settings.engine)
        self._engine_thread: ThreadPoolExecutor | None = None  # started by the first cycle
        self.inline_below_items = INLINE_BELOW_ITEMS
        # What ShardRead.InspectNeeds serves: the last cycles' verdicts, stamped when made.
        self.verdicts = VerdictShelf(lambda: int(clock.time() * 1e9))
        self._verdict_failures = 0  # the engine's count, as last exported
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
        self.engine.set_rails(
            replace(
                self.engine.settings.rails,
                pause_acquisitions=pause_acquisitions,
                pause_reclaims=pause_reclaims,
                dry_run=dry_run,
            )
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
        r = self.engine.settings.rails
        self.metrics.actuation_paused.set(
            int(r.pause_acquisitions or r.pause_reclaims or r.dry_run)
        )

    # -- the loop --------------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        self._listed.clear()
        await self.reconciler.run()
        if self._listed >= set(self.providers):
            self.last_reconciled_at = self.clock.monotonic()

    def reconcile_wait(self) -> float:
        """How long a cycle waits for its provider pass before deciding without it."""
        return max(self.cycle_interval_s, RECONCILE_WAIT_MIN_S)

    async def _provider_pass(self) -> None:
        """Start a provider pass (unless one is still under way) and wait for it, but
        only so long: a provider that hangs (a partition swallows bytes rather than
        refusing them) must not stop the shard deciding on what it already knows,
        emitting hints and reporting. The late pass lands before a later cycle."""
        if self._reconciling is None:
            self._reconciling = asyncio.ensure_future(self._reconcile())
        done, _ = await asyncio.wait({self._reconciling}, timeout=self.reconcile_wait())
        if not done:
            self.metrics.reconcile_overdue.inc()
            if not self._overdue:
                log.warning(
                    "a provider pass is overdue; cycles go on with the inventory as last listed",
                    extra={"waited_s": self.reconcile_wait()},
                )
            self._overdue = True
            return
        finished, self._reconciling = self._reconciling, None
        if self._overdue:
            log.info("the overdue provider pass finished; cycles see fresh listings again")
            self._overdue = False
        finished.result()  # a failing pass fails the cycle, as it always did

    async def cycle_once(self) -> CycleResult:
        start = time.perf_counter()
        await self._provider_pass()
        if self.reconciler.ready and not self._inventory_frozen:
            # The inventory just loaded lives as long as the process: moving it out of
            # the collector's view keeps full collections from walking every machine
            # in the middle of a cycle.
            gc.collect()
            gc.freeze()
            self._inventory_frozen = True
        reconcile_s = time.perf_counter() - start
        compute_start = time.perf_counter()  # from here on nothing awaits but the engine
        result = await self._decide()
        self.executor.submit(result.rails.execute)
        self.channels.sweep()  # clusters gone past the retention are forgotten once a cycle
        emit_start = time.perf_counter()
        self.hints.emit(
            self.state.inventory, self.state.table, self.channels, self.clock.monotonic()
        )
        self.metrics.cycle_phase_duration.labels("emit").observe(time.perf_counter() - emit_start)
        self.cycles += 1
        self.last, self.last_cycle_at = result, self.clock.time()
        book = self.engine.verdicts
        if book is not None:
            self.verdicts.put(book.last)
            if book.failures > self._verdict_failures and book.error is not None:
                err = book.error
                log.error(
                    "per-need verdicts not recorded this cycle; its actions went ahead",
                    exc_info=(type(err), err, err.__traceback__),
                )
                self.metrics.verdict_failures.inc(book.failures - self._verdict_failures)
                self._verdict_failures = book.failures
        total_s = time.perf_counter() - start
        self.cycle_seconds.append(total_s)
        record_cycle(
            self.metrics,
            result,
            inventory=self.state.inventory,
            table=self.state.table,
            shortfalls=self.engine.shortfalls,
            reconcile_s=reconcile_s,
            total_s=total_s,
        )
        self.metrics.cycle_compute.observe(time.perf_counter() - compute_start)
        return result

    async def _decide(self) -> CycleResult:
        """The engine's cycle over a state that holds still: in the engine's thread, or on
        the loop for a small shard."""
        return await self._decide_in_thread() if self._threaded() else self._decide_inline()

    def _threaded(self) -> bool:
        return len(self.state.inventory) + len(self.state.table) >= self.inline_below_items

    def _decide_inline(self) -> CycleResult:
        state = self.state
        state.begin_cycle()
        try:
            return self.engine.cycle(
                state.inventory, state.table, state.reported, self.clock.monotonic()
            )
        finally:
            state.end_cycle()

    async def _decide_in_thread(self) -> CycleResult:
        state = self.state
        if self._engine_thread is None:
            self._engine_thread = ThreadPoolExecutor(1, thread_name_prefix="engine")
        state.begin_cycle()  # before the thread can start reading
        try:
            decided = asyncio.get_running_loop().run_in_executor(
                self._engine_thread,
                self.engine.cycle,
                state.inventory,
                state.table,
                state.reported,
                self.clock.monotonic(),
            )
        except BaseException:
            state.end_cycle()
            raise
        try:
            return await asyncio.shield(decided)
        finally:
            if decided.done():
                state.end_cycle()
            else:  # cancelled while the thread still reads: writers wait for it to finish
                decided.add_done_callback(lambda _: state.end_cycle())

    async def _loop(self) -> None:
        try:
            await self._cycles()
        finally:  # a pass left under way must not outlive the loop
            if self._reconciling is not None:
                self._reconciling.cancel()
                self._reconciling = None

    async def _cycles(self) -> None:
        last_start = -1e9
        while True:
            await woken(self._wake, self.clock, self.cycle_interval_s)
            self._wake.clear()
            gap = self.settings.min_cycle_gap_s - (self.clock.monotonic() - last_start)
            if gap > 0:
                await self.clock.sleep(gap)  # rate limit: bursts collapse into one early cycle
            last_start = self.clock.monotonic()
            with logs.bound(shard_id=self.settings.shard_id, epoch=self.epoch):
                # A failing cycle ends this run of the loop: `Loops` logs it with its
                # traceback, counts it and starts the loop again after a backoff.
                await self.cycle_once()
            beat()

    # -- probes ------------------------------------------------------------------------------------

    def ready_window(self) -> float:
        """Seconds a complete provider reconcile keeps the shard ready."""
        if self.ready_window_s is not None:
            return self.ready_window_s
        return READY_WINDOW_CYCLES * max(self.cycle_interval_s, READY_WINDOW_MIN_S)

    def unready(self) -> str | None:
        """Why the shard cannot do its job now (/readyz, the Shard's Ready condition); None
        while it can: its view of the providers is recent."""
        if self.last_reconciled_at is None:
            return "no provider reconcile has succeeded yet"
        age, window = self.clock.monotonic() - self.last_reconciled_at, self.ready_window()
        if age > window:
            return f"no provider reconcile has succeeded for {age:.0f}s (window {window:.0f}s)"
        return None

    def cycle_stuck_after(self) -> float:
        """Seconds without a completed cycle after which the cycle loop counts as stuck."""
        return max(STUCK_MIN_S, STUCK_CYCLES * self.cycle_interval_s)

    async def start_server(self) -> grpc.aio.Server:
        sessions = SessionService(
            self.channels,
            self.state,
            self.metrics,
            self.settings.allowed_clusters,
            self.settings.max_frame_bytes,
            mutual_tls=self.credentials is not None,
        )
        # Identity checks need mutual TLS: a plaintext server gets no interceptor.
        interceptors = (
            [tls.RequireIdentity(session_policy, sessions.identity_rejected)]
            if self.credentials is not None
            else []
        )
        # The receive ceiling is the frame limit: a larger frame is refused before it is
        # buffered whole.
        server = grpc.aio.server(
            options=session_server_options(self.settings.max_frame_bytes),
            interceptors=interceptors,
        )
        shard_pb2_grpc.add_ShardServicer_to_server(sessions, server)
        shardread_pb2_grpc.add_ShardReadServicer_to_server(
            ShardReadService(self.verdicts, self.metrics), server
        )
        self.port = tls.add_port(server, self.settings.listen, self.credentials)
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
                lambda: self.unready() is None,
                lambda: self.unready() or "ready",
                self.loops.problems,
            )
        log.info(
            "shard serving",
            extra={
                "shard_id": self.settings.shard_id,
                "epoch": self.epoch,
                "port": self.port,
                "tls": self.credentials is not None,
                "engine": ENGINE_BUILD,  # compiled or python (ADR 0023)
            },
        )
        if started is not None:
            started.set()
        try:
            async with asyncio.TaskGroup() as group:  # neither raises: `Loops` restarts them
                group.create_task(self.executor.run())
                group.create_task(
                    self.loops.run("shard_cycle", self._loop, max_period_s=self.cycle_stuck_after)
                )
                self._wake.set()  # the first cycle rebuilds the inventory at once
        finally:
            # Streams end with UNAVAILABLE and a reason, sent within the grace, rather
            # than being cut when it runs out.
            self.channels.close_all()
            await server.stop(grace=1)
            if runner is not None:
                await runner.cleanup()
            for client in self.providers.values():
                await client.close()
            if self._engine_thread is not None:
                self._engine_thread.shutdown(wait=False)  # a cycle under way finishes first
                self._engine_thread = None

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
