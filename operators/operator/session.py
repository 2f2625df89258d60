"""The operator's one outbound Shard.Session stream, and what it does with the frames.

Hello first; a roll-up at once and then every interval (a newer roll-up
replaces an unsent one); answers (join blobs) go out ahead of roll-ups. When
the shard acknowledges a roll-up, the CRs it newly included turn
Acknowledged, a status patch each, with bounded concurrency. A broken stream
is redialled with jittered exponential backoff (0.5 s doubling to 30 s), reset
after a session that exchanged frames.

The roll-up loop runs under `bigfleet.supervise.Loops` (restarted after an
unexpected error, watched by /healthz); frame handlers log what they did not
expect instead of dying silently. The session is ready (/readyz) while a stream
to the shard has exchanged frames, and during `ready_grace_s` after start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import kr8s
import kr8s.asyncio
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from bigfleet import capacity_events, logs, tls
from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.crd.models import CapacityRequestStatus
from bigfleet.lifecycle import MachineState
from bigfleet.operators.operator import capacity_requests, events, reclaim
from bigfleet.operators.operator import rollup as rollups
from bigfleet.operators.operator.bootstrap import BootstrapResponder
from bigfleet.operators.operator.explain import Explainer
from bigfleet.operators.operator.metrics import OperatorMetrics
from bigfleet.operators.operator.writers import write_available, write_upcoming
from bigfleet.recorder import Recorder
from bigfleet.supervise import Loops, backoff, beat
from bigfleet.timestamps import rfc3339
from bigfleet.wire import GRPC_OPTIONS, PROTOCOL_VERSION, shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)
# An object the CRD models refuse fails its write as one the API server refuses does.
WRITE_ERRORS = (kr8s.ServerError, ValidationError)


STABLE_SESSION_S = 30.0  # a stream that lasted this long ended for reasons of its own


class SessionEnded(Exception):
    """The stream ended after exchanging frames, `lasted_s` after it was dialled."""

    def __init__(self, lasted_s: float) -> None:
        super().__init__(f"the session ended after {lasted_s:.1f} s")
        self.lasted_s = lasted_s


def redial_delay(short_sessions: int) -> float:
    """The pause before dialling again after sessions that each ended soon after they
    opened (a shard that refuses what this operator sends, say): drawn from the upper
    half of a ceiling that doubles from 0.5 s to 30 s, so such a loop never spins; after
    a stable session, 0.1 s."""
    if short_sessions == 0:
        return 0.1
    return backoff(short_sessions - 1, 0.5, 30.0)


class OperatorSession:
    def __init__(
        self,
        *,
        cluster_id: str,
        shard_address: str,
        api: kr8s.asyncio.Api,
        responder: BootstrapResponder,
        rollup_interval_s: float = 10.0,
        ack_concurrency: int = 16,
        list_crs: Callable[[], Awaitable[Iterable[Mapping[str, Any]]]] | None = None,
        metrics: OperatorMetrics | None = None,
        on_untranslatable: Callable[[str, str, str], Awaitable[None]] | None = None,
        clock: Clock = REAL_CLOCK,
        credentials: tls.Credentials | None = None,
        loops: Loops | None = None,
        ready_grace_s: float = 60.0,
        recorder: Recorder | None = None,
    ) -> None:
        # Events on requests and Nodes; without one, uids are read from the API server.
        self.recorder = recorder or Recorder(api, events.COMPONENT, clock=clock)
        self.metrics = metrics or OperatorMetrics(CollectorRegistry())
        self.on_untranslatable = on_untranslatable
        self.cluster_id = cluster_id
        self.shard_address = shard_address
        self.api = api
        self.responder = responder
        self.rollup_interval_s = rollup_interval_s
        self._ack_limit = asyncio.Semaphore(ack_concurrency)
        self._acking: set[tuple[str, str]] = set()  # requests whose patch is in flight
        self._list_crs = list_crs or functools.partial(capacity_requests.list_all, api)
        self.clock = clock
        self.credentials = credentials  # the newest coherent pair is taken at every dial
        self.sessions = 0  # streams opened, for tests and metrics
        # machine -> (newest update, when it arrived on the monotonic clock)
        self._pending_upcoming: dict[str, tuple[shard_pb2.NodeStateUpdate, float]] = {}
        self._writing: set[str] = set()
        self._reported: set[tuple[str, str, str]] = set()
        self._event_limit = asyncio.Semaphore(8)
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._explainer = Explainer()
        self._requests: list[rollups.Translated] = []  # what the last roll-up carried
        # The newest roll-up put on a stream (only that one: the shard's verdicts are mapped
        # back to requests through it).
        self.last_rollup: rollups.Rollup | None = None
        self._translations = rollups.Memo()
        self.loops = loops or Loops(clock=clock)
        self.ready_grace_s = ready_grace_s
        self.established = False  # a stream to the shard is up and has exchanged frames
        self._started_at: float | None = None
        self._short_sessions = 0  # sessions in a row that ended soon after they opened

    # -- readiness --------------------------------------------------------------------------

    def unready(self) -> str | None:
        """Why the operator cannot do its job now (/readyz); None while it can."""
        if self.established:
            return None
        started = self._started_at
        if started is not None and self.clock.monotonic() - started <= self.ready_grace_s:
            return None  # the first dial gets a grace
        return f"no session to the shard at {self.shard_address}"

    def rollup_stuck_after(self) -> float:
        """Liveness: a roll-up (from the cache, Events for new problems) and the wait
        before the next take far less than this."""
        return max(120.0, 5 * self.rollup_interval_s)

    # -- the reconnect loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Hold the stream until cancelled. A stream that breaks is redialled here; anything
        else raised goes to whoever supervises this loop (`operator_session` in the app)."""
        if self._started_at is None:
            self._started_at = self.clock.monotonic()
        with logs.bound(cluster=self.cluster_id):
            while True:
                try:
                    async for attempt in AsyncRetrying(
                        sleep=self.clock.sleep,
                        wait=wait_random_exponential(multiplier=0.5, max=30),
                        # Only a broken stream retries: cancellation must stop the loop, and
                        # an unexpected error is the supervisor's to log, count and back off.
                        retry=retry_if_exception_type(grpc.aio.AioRpcError)
                        & retry_if_not_exception_type(SessionEnded),
                        reraise=True,
                    ):
                        with attempt:
                            await self._session()
                except SessionEnded as ended:
                    stable = ended.lasted_s >= STABLE_SESSION_S
                    self._short_sessions = 0 if stable else self._short_sessions + 1
                    await self.clock.sleep(redial_delay(self._short_sessions))
                self.metrics.reconnects.inc()

    async def _session(self) -> None:
        outbox: asyncio.Queue[shard_pb2.OperatorMessage] = asyncio.Queue()
        slot: list[rollups.Rollup | None] = [None]
        sent: list[rollups.Rollup] = []
        wake = asyncio.Event()
        exchanged = False

        async def frames() -> AsyncIterator[shard_pb2.OperatorMessage]:
            yield shard_pb2.OperatorMessage(
                hello=shard_pb2.Hello(cluster_id=self.cluster_id, protocol_version=PROTOCOL_VERSION)
            )
            while True:
                await wake.wait()
                wake.clear()
                while not outbox.empty():  # answers first: the shard is waiting on them
                    yield outbox.get_nowait()
                if slot[0] is not None:
                    current, slot[0] = slot[0], None
                    sent.append(current)
                    self.last_rollup = current
                    yield shard_pb2.OperatorMessage(rollup=current.message)

        async def rollup_loop() -> None:
            while True:
                beat()
                try:
                    await rollup_once()
                except kr8s.ServerError as err:  # a list from the API server failed
                    log.warning("roll-up failed", extra={"error": str(err)})
                await self.clock.sleep(self.rollup_interval_s)

        async def rollup_once() -> None:
            crs = list(await self._list_crs())
            with self.metrics.rollup_duration.time():
                built = rollups.build(
                    self.cluster_id, crs, int(self.clock.time() * 1e9), self._translations
                )
            log.debug(
                "roll-up built",
                extra={
                    "needs": len(built.message.needs),
                    "requests": len(crs),
                    "left_out": len(built.problems),
                },
            )
            self._requests = built.translated
            self._explainer.keep(built.translated)
            slot[0] = built  # a newer roll-up replaces an unsent one
            wake.set()  # the roll-up goes out before any problem is reported
            for namespace, name, why in built.problems:
                self.metrics.untranslatable.inc()
                log.warning(
                    "CapacityRequest left out of the roll-up",
                    extra={"namespace": namespace, "request": name, "reason": why},
                )
                key = (namespace, name, why)
                if self.on_untranslatable is not None and key not in self._reported:
                    self._reported.add(key)  # one Event per request and reason
                    try:
                        await self.on_untranslatable(namespace, name, why)
                    except kr8s.ServerError as err:
                        log.warning(
                            "untranslatable request not reported",
                            extra={"request": name, "error": str(err)},
                        )
                    except Exception:  # the report explains; it must not stop roll-ups
                        log.exception(
                            "untranslatable request not reported", extra={"request": name}
                        )

        def reply(frame: shard_pb2.OperatorMessage) -> None:
            outbox.put_nowait(frame)
            wake.set()

        channel = tls.channel(self.shard_address, self.credentials, options=GRPC_OPTIONS)
        self.sessions += 1
        dialled = self.clock.monotonic()
        roller = asyncio.create_task(
            self.loops.run("operator_rollup", rollup_loop, max_period_s=self.rollup_stuck_after)
        )
        workers: set[asyncio.Task[None]] = set()
        try:
            call = shard_pb2_grpc.ShardStub(channel).Session(frames())
            async for frame in call:
                exchanged = self.established = True
                task = asyncio.create_task(self._dispatch(frame, sent, reply))
                workers.add(task)
                task.add_done_callback(workers.discard)
        except grpc.aio.AioRpcError as err:
            log.warning(
                "session to the shard broke",
                extra={"code": err.code().name, "error": err.details()},
            )
            if not exchanged:
                raise
        finally:
            self.established = False
            roller.cancel()
            for task in workers:
                task.cancel()
            await asyncio.gather(roller, *workers, return_exceptions=True)
            await channel.close()
        raise SessionEnded(self.clock.monotonic() - dialled)

    # -- frames from the shard --------------------------------------------------------------

    async def _dispatch(
        self,
        frame: shard_pb2.ShardMessage,
        sent: list[rollups.Rollup],
        reply: Callable[[shard_pb2.OperatorMessage], None],
    ) -> None:
        kind = frame.WhichOneof("payload")
        self.metrics.dispatch_inflight.inc()  # a task per frame: none waits on another
        try:
            if kind == "ack" and frame.ack.echo == "rollup" and sent:
                await self._acknowledge(sent.pop(0).pending)
            elif kind == "bootstrap_request":
                answer = await self.responder.answer(frame.bootstrap_request)
                reply(shard_pb2.OperatorMessage(bootstrap_response=answer))
            elif kind == "node_state_update":
                update = frame.node_state_update
                if int(update.state) == MachineState.CONFIGURING:
                    coming = self._explainer.node_coming(self._requests, update.labels)
                    self._explain(
                        [(events.node_coming, t) for t in coming],
                        update.machine_id,
                        capacity_events.rack_of(update.labels),
                    )
                await self._coalesced_upcoming(update)
            elif kind == "available_capacity":
                hint = frame.available_capacity
                await write_available(self.api, hint)
                if hint.available_count == 0:
                    waiting = self._explainer.waiting(self._requests, hint)
                    self._explain([(events.waiting, t) for t in waiting])
            elif kind == "reclaim_instruction":
                await reclaim.handle(
                    self.api,
                    frame.reclaim_instruction,
                    lambda ack: reply(shard_pb2.OperatorMessage(reclaim_ack=ack)),
                    self.clock,
                    recorder=self.recorder,
                )
        except WRITE_ERRORS as err:
            log.warning("cluster write failed", extra={"frame": kind, "error": str(err)})
        except Exception:  # a handler's own failure: this frame is lost, not the session
            log.exception("frame not handled", extra={"frame": kind})
        finally:
            self.metrics.dispatch_inflight.dec()

    async def _coalesced_upcoming(self, update: shard_pb2.NodeStateUpdate) -> None:
        """One writer per machine; a burst of updates collapses into the newest."""
        machine = update.machine_id
        self._pending_upcoming[machine] = (update, self.clock.monotonic())
        if machine in self._writing:
            return  # the running writer picks the newest up
        self._writing.add(machine)
        try:
            while (pending := self._pending_upcoming.pop(machine, None)) is not None:
                latest, arrived = pending
                try:
                    await write_upcoming(self.api, latest)
                    self.metrics.upcoming_node_writes.labels("success").inc()
                    self.metrics.upcoming_node_latency.observe(self.clock.monotonic() - arrived)
                except WRITE_ERRORS as err:
                    self.metrics.upcoming_node_writes.labels("error").inc()
                    log.warning(
                        "UpcomingNode write failed",
                        extra={"machine_id": machine, "error": str(err)},
                    )
        finally:
            self._writing.discard(machine)

    async def _acknowledge(self, pending: Iterable[rollups.Translated]) -> None:
        with self.metrics.acknowledge_duration.time():
            result = await acknowledge(
                self.api, pending, self._ack_limit, self._acking, sleep=self.clock.sleep
            )
        done = result.done
        self.metrics.acknowledged.inc(len(done))
        if result.failed:
            self.metrics.acknowledge_failures.inc(len(result.failed))
            first, error = result.failed[0]
            log.warning(
                "requests not acknowledged; a later roll-up tries again",
                extra={"count": len(result.failed), "first": first.name, "error": str(error)},
            )
        # Events explain, they do not gate: written after the acknowledgements, at a lower pace.
        self._explain([(events.acknowledged, t) for t in done])

    def _explain(
        self, items: list[tuple[Callable[..., Awaitable[None]], rollups.Translated]], *extra: str
    ) -> None:
        async def write() -> None:
            for emit, t in items:
                async with self._event_limit:
                    try:
                        await emit(self.recorder, t.namespace, t.name, *extra)
                    except kr8s.ServerError as err:
                        log.info("event not written", extra={"request": t.name, "error": str(err)})
                    except Exception:  # Events explain; one that fails stops nothing
                        log.exception("event not written", extra={"request": t.name})

        if items:
            task = asyncio.create_task(write())
            self._event_tasks.add(task)
            task.add_done_callback(self._event_tasks.discard)


ACK_ATTEMPTS = 3  # tries per request within one acknowledgement, for passing failures


def _passing(err: BaseException) -> bool:
    """An answer a moment later may differ: throttled, a server error, no answer."""
    if isinstance(err, kr8s.ServerError):
        code = err.response.status_code if err.response is not None else 0
        return code == 429 or code >= 500
    return isinstance(err, kr8s.APITimeoutError | httpx.TransportError)


@dataclass(frozen=True)
class Acknowledged:
    done: list[rollups.Translated]
    failed: list[tuple[rollups.Translated, Exception]]  # left Pending for a later roll-up


async def acknowledge(
    api: kr8s.asyncio.Api,
    pending: Iterable[rollups.Translated],
    limit: asyncio.Semaphore,
    in_flight: set[tuple[str, str]] | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Acknowledged:
    """Mark requests Acknowledged, one status merge patch each, `limit` at a time.

    A request whose patch is already in flight (in `in_flight`, shared by the calls of
    one session) is skipped: while acknowledgements are slower than the roll-up
    interval, every roll-up still lists the same Pending requests, and patching each of
    them again per roll-up would multiply the writes and slow them further.

    A passing failure (429, 5xx, no answer) is tried again, `ACK_ATTEMPTS` times in
    all with a short jittered backoff, outside `limit` while it waits. A request that
    still fails is returned under `failed` and stays Pending, so a later roll-up
    acknowledges it; it costs no other request its acknowledgement."""
    status = CapacityRequestStatus(phase="Acknowledged", acknowledged_at=rfc3339())
    busy = set() if in_flight is None else in_flight

    async def one(t: rollups.Translated) -> rollups.Translated | None:
        key = (t.namespace, t.name)
        if key in busy:
            return None
        busy.add(key)
        try:
            async for attempt in AsyncRetrying(
                sleep=sleep,
                stop=stop_after_attempt(ACK_ATTEMPTS),
                wait=wait_random_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception(_passing),
                reraise=True,
            ):
                with attempt:
                    async with limit:
                        await capacity_requests.patch_status(api, t.namespace, t.name, status)
        except kr8s.NotFoundError:
            return None  # deleted meanwhile: nothing to acknowledge
        finally:
            busy.discard(key)
        return t

    listed = list(pending)
    outcomes = await asyncio.gather(*(one(t) for t in listed), return_exceptions=True)
    done, failed = [], []
    for t, outcome in zip(listed, outcomes, strict=True):
        if isinstance(outcome, Exception):
            failed.append((t, outcome))
        elif isinstance(outcome, BaseException):
            raise outcome  # cancelled: not a failure of this request
        elif outcome is not None:
            done.append(outcome)
    return Acknowledged(done, failed)
