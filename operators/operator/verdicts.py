"""The `Satisfied` condition on CapacityRequests, from the shard's verdicts for this cluster.

Every interval the operator reads `ShardRead.InspectNeeds` for its own cluster from the
shard it holds its session with (same address, same credentials), page by page. Each
row is the shard's verdict on one need, carrying the need as the operator sent it; the
need's fold identity (`bigfleet.explain.fold_identity`) names the requests the last
roll-up folded into it, and each of them gets the verdict: `Satisfied=True` (reason
`Satisfied`) or `Satisfied=False` with the reason the shard gives (`NoMatchingSupply`,
`PriorityStarved`, ...) and the sentence of `bigfleet.explain.condition_message`. A
request in the roll-up without a row keeps what it has; `status.phase` is not touched.

Writes are server-side applies of that one condition (others, like `Translatable`,
stay), and rate-limited: a request is written when its status or reason changes, or
when only the message changed and its last write is `refresh_s` old; at most
`max_writes` a tick (transitions first; the rest next tick), `write_concurrency` at
once. `lastTransitionTime` moves only when the status does. A request turning
`Satisfied=False` also gets a Warning Event, once per reason until it is satisfied
again (a later shortfall is told again).

The pure parts (`requests_by_need`, `assign`, `due`, `plan`, `condition`) carry the
logic and are unit-tested; `VerdictPoller` is the loop around them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import grpc
import kr8s
import kr8s.asyncio
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from bigfleet import explain, logs, tls
from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.crd.models import RequestCondition
from bigfleet.operators.operator.capacity_requests import apply_condition
from bigfleet.operators.operator.metrics import OperatorMetrics
from bigfleet.operators.operator.rollup import Rollup
from bigfleet.supervise import beat
from bigfleet.wire import GRPC_OPTIONS, shardread_pb2, shardread_pb2_grpc

log = logging.getLogger(__name__)

CONDITION = "Satisfied"
MANAGER = "bigfleet-operator-satisfied"  # the field manager owning the condition
PAGE_SIZE = 500  # rows per InspectNeeds call
MAX_PAGES = 10_000  # a server whose page tokens never end cannot hold the loop
WALK_RESTARTS = 3  # walks begun again after the shard dropped the walk's cycle (ABORTED)
CALL_TIMEOUT_S = 30.0
REFRESH_S = 60.0  # a message-only change waits this long after the last write
MAX_WRITES = 200  # condition writes per tick; the rest wait for the next
UNIMPLEMENTED_INTERVAL_S = 300.0  # a shard without ShardRead is asked again this seldom
SETTLE_S = 5.0  # after this, the watch has delivered the operator's own write
WRITE_ERRORS = (kr8s.ServerError, ValidationError)

Key = tuple[str, str]  # (namespace, name)
Status = Literal["True", "False"]


@dataclass(frozen=True)
class Verdict:
    """What the condition should say."""

    status: Status
    reason: str
    message: str


@dataclass(frozen=True)
class Written:
    """What a request's condition says now, as far as the operator knows."""

    status: str
    reason: str
    message: str
    transitioned: datetime | None  # lastTransitionTime; None when unknown
    at: float  # when the operator wrote it (monotonic); -inf for one read back from the object


def verdict_of(view: shardread_pb2.NeedView) -> Verdict:
    return Verdict(
        status="True" if view.satisfied else "False",
        reason=explain.reason(view),
        message=explain.condition_message(view),
    )


# A need of the last roll-up: the total it asked for, and the requests folded into it.
Folded = tuple[dict[str, str], list[Key]]


def requests_by_need(rollup: Rollup) -> dict[explain.FoldIdentity, Folded]:
    """The requests of each need of a roll-up, by the need's fold identity."""
    members: dict[tuple[object, ...], list[Key]] = {}
    for t in rollup.translated:
        members.setdefault(t.key, []).append((t.namespace, t.name))
    found: dict[explain.FoldIdentity, Folded] = {}
    for need, key in zip(rollup.message.needs, rollup.need_keys, strict=True):
        found[explain.fold_identity(need)] = (
            dict(need.aggregate_resources),
            list(members.get(key, ())),
        )
    return found


def assign(
    views: Iterable[shardread_pb2.NeedView], by_need: Mapping[explain.FoldIdentity, Folded]
) -> dict[Key, Verdict]:
    """Each request's verdict: the verdict on the need it folded into. A row for a need the
    roll-up does not hold (an older fold) concerns no request, nor does a row judged on
    another total (a request joined or left since): its requests wait for the next cycle."""
    verdicts: dict[Key, Verdict] = {}
    for view in views:
        aggregate, members = by_need.get(explain.fold_identity(view.need), ({}, []))
        if members and dict(view.need.aggregate_resources) == aggregate:
            verdict = verdict_of(view)
            for key in members:
                verdicts[key] = verdict
    return verdicts


def due(previous: Written | None, verdict: Verdict, now: float, refresh_s: float) -> int:
    """How urgently the condition needs writing: 2 a transition (new status or reason, or no
    condition yet), 1 a newer message after `refresh_s`, 0 not now."""
    if previous is None or (previous.status, previous.reason) != (verdict.status, verdict.reason):
        return 2
    if previous.message != verdict.message and now - previous.at >= refresh_s:
        return 1
    return 0


def plan(
    verdicts: Mapping[Key, Verdict],
    written: Mapping[Key, Written],
    now: float,
    refresh_s: float = REFRESH_S,
    cap: int = MAX_WRITES,
) -> tuple[list[Key], int]:
    """The requests to write this tick, transitions first, at most `cap`; and how many more
    are due (they come next tick)."""
    ranked = []
    for key, verdict in verdicts.items():
        urgency = due(written.get(key), verdict, now, refresh_s)
        if urgency:
            ranked.append((-urgency, key))
    ranked.sort()
    return [key for _, key in ranked[:cap]], max(0, len(ranked) - cap)


def condition(previous: Written | None, verdict: Verdict, now: datetime) -> RequestCondition:
    """The condition to write; `now` is its transition time only when the status changes
    (Kubernetes' convention)."""
    since = now
    if previous is not None and previous.status == verdict.status and previous.transitioned:
        since = previous.transitioned
    return RequestCondition(
        type=CONDITION,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        last_transition_time=since,
    )


def _says(w: Written) -> tuple[str, str, str]:
    return (w.status, w.reason, w.message)


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def read_back(obj: Mapping[str, Any] | None) -> Written | None:
    """The Satisfied condition a request object already carries (after a restart, say)."""
    if obj is None:
        return None
    for c in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == CONDITION:
            return Written(
                status=str(c.get("status", "")),
                reason=str(c.get("reason", "")),
                message=str(c.get("message", "")),
                transitioned=_when(c.get("lastTransitionTime")),
                at=float("-inf"),
            )
    return None


class VerdictPoller:
    """The loop that reads the shard's verdicts and writes the Satisfied conditions."""

    def __init__(
        self,
        *,
        cluster_id: str,
        shard_address: str,
        api: kr8s.asyncio.Api,
        rollup: Callable[[], Rollup | None],
        current: Callable[[str, str], Mapping[str, Any] | None] | None = None,
        on_unsatisfied: Callable[[str, str, str, str], Awaitable[None]] | None = None,
        metrics: OperatorMetrics | None = None,
        clock: Clock = REAL_CLOCK,
        credentials: tls.Credentials | None = None,
        interval_s: float = 10.0,
        write_concurrency: int = 16,
        max_writes: int = MAX_WRITES,
        refresh_s: float = REFRESH_S,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.cluster_id = cluster_id
        self.shard_address = shard_address
        self.api = api
        self._rollup = rollup  # the last roll-up the session sent
        self._current = current  # the request as the watch last delivered it
        self.on_unsatisfied = on_unsatisfied
        self.metrics = metrics or OperatorMetrics(CollectorRegistry())
        self.clock = clock
        self.credentials = credentials
        self.interval_s = interval_s
        self.max_writes = max_writes
        self.refresh_s = refresh_s
        self.page_size = page_size
        self._limit = asyncio.Semaphore(write_concurrency)
        self._written: dict[Key, Written] = {}  # only requests of the last roll-up
        # Reasons each request got a Warning Event for since it was last satisfied.
        self._told: dict[Key, set[str]] = {}
        self._logged: set[grpc.StatusCode] = set()  # failures logged since the last success
        self._unimplemented = False
        self._channel: grpc.aio.Channel | None = None
        self._rotations = -1

    def sleep_s(self) -> float:
        if self._unimplemented:
            return max(self.interval_s, UNIMPLEMENTED_INTERVAL_S)
        return self.interval_s

    def stuck_after(self) -> float:
        """Liveness: a poll (paging plus at most `max_writes` writes) and the pause after it
        take far less than this."""
        return max(120.0, 5 * self.sleep_s(), 4 * CALL_TIMEOUT_S)

    async def run(self) -> None:
        with logs.bound(cluster=self.cluster_id):
            try:
                while True:
                    beat()
                    await self.tick()
                    await self.clock.sleep(self.sleep_s())
            finally:
                await self._close()

    # -- reading ------------------------------------------------------------------------------

    async def _dial(self) -> grpc.aio.Channel:
        """One channel, dialled again when the certificate rotated."""
        rotations = 0
        if self.credentials is not None:
            self.credentials.refresh()
            rotations = self.credentials.rotations
        if self._channel is None or rotations != self._rotations:
            await self._close()
            self._channel = tls.channel(self.shard_address, self.credentials, options=GRPC_OPTIONS)
            self._rotations = rotations
        return self._channel

    async def _close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    async def fetch(
        self,
    ) -> tuple[shardread_pb2.InspectNeedsHeader | None, list[shardread_pb2.NeedView]]:
        """Every verdict for this cluster, through all pages; (None, []) before any cycle.
        A walk whose cycle the shard stopped keeping (ABORTED) starts again, a few times."""
        stub = shardread_pb2_grpc.ShardReadStub(await self._dial())
        for attempt in range(WALK_RESTARTS):
            try:
                return await self._walk(stub)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.ABORTED or attempt == WALK_RESTARTS - 1:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _walk(
        self, stub: shardread_pb2_grpc.ShardReadStub
    ) -> tuple[shardread_pb2.InspectNeedsHeader | None, list[shardread_pb2.NeedView]]:
        first: shardread_pb2.InspectNeedsHeader | None = None
        views: list[shardread_pb2.NeedView] = []
        token = ""
        for _ in range(MAX_PAGES):
            header: shardread_pb2.InspectNeedsHeader | None = None
            call = stub.InspectNeeds(
                shardread_pb2.InspectNeedsRequest(
                    cluster_id=self.cluster_id, limit=self.page_size, page_token=token
                ),
                timeout=CALL_TIMEOUT_S,
            )
            async for frame in call:
                kind = frame.WhichOneof("frame")
                if kind == "header":
                    header = frame.header
                elif kind == "need" and frame.need.cluster_id in ("", self.cluster_id):
                    views.append(frame.need)
            if header is None or header.cycle == 0:
                return header, []  # no cycle yet (or the shard restarted while we paged)
            if first is None:
                first = header
            token = header.next_page_token
            if not token:
                break
        return first, views

    def _failed(self, err: grpc.aio.AioRpcError) -> None:
        code = err.code()
        self.metrics.verdict_poll_failures.labels(code.name).inc()
        first = code not in self._logged
        self._logged.add(code)
        extra = {"shard": self.shard_address, "code": code.name, "error": err.details()}
        if code == grpc.StatusCode.UNIMPLEMENTED:
            self._unimplemented = True
            if first:
                log.info(
                    "the shard does not serve ShardRead.InspectNeeds: no Satisfied conditions; "
                    "asking again every %.0f s",
                    self.sleep_s(),
                    extra=extra,
                )
        elif code == grpc.StatusCode.PERMISSION_DENIED:
            if first:
                log.warning(
                    "the shard refuses this operator's verdicts: its certificate must name "
                    "bigfleet://cluster/%s; no Satisfied conditions until it does",
                    self.cluster_id,
                    extra=extra,
                )
        elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.debug("verdicts not read; next tick", extra=extra)
        elif first:
            log.warning("verdicts not read; next tick", extra=extra)

    # -- one poll -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Read the verdicts and write the conditions that are due."""
        rollup = self._rollup()
        if rollup is None:
            return  # nothing sent yet: no request has a verdict
        try:
            header, views = await self.fetch()
        except grpc.aio.AioRpcError as err:
            self._failed(err)
            return
        self._logged.clear()
        self._unimplemented = False
        if header is None or header.cycle == 0:
            return  # the shard has not computed a cycle yet
        verdicts = assign(views, requests_by_need(rollup))
        live = {(t.namespace, t.name) for t in rollup.translated}
        self._written = {k: w for k, w in self._written.items() if k in live}
        self._told = {k: told for k, told in self._told.items() if k in live}
        now = self.clock.monotonic()
        if self._current is not None:
            for key in verdicts:
                self._reconcile(key, now)
        todo, deferred = plan(verdicts, self._written, now, self.refresh_s, self.max_writes)
        if todo or deferred:
            log.debug(
                "Satisfied conditions due",
                extra={"cycle": header.cycle, "writing": len(todo), "deferred": deferred},
            )
        await asyncio.gather(*(self._write(key, verdicts[key]) for key in todo))

    def _reconcile(self, key: Key, now: float) -> None:
        """Take what the object says over what was written when they differ and the watch
        has had time to deliver the write: the condition as found after a restart, or gone
        because someone replaced the conditions, is then written again."""
        assert self._current is not None
        mine = self._written.get(key)
        if mine is not None and now - mine.at < SETTLE_S:
            return  # just written: the cache may not have it yet
        seen = read_back(self._current(*key))
        if seen is None:
            self._written.pop(key, None)
        elif mine is None or _says(seen) != _says(mine):
            self._written[key] = seen

    async def _write(self, key: Key, verdict: Verdict) -> None:
        namespace, name = key
        async with self._limit:
            previous = self._written.get(key)
            now = datetime.fromtimestamp(int(self.clock.time()), UTC)  # whole seconds
            written = condition(previous, verdict, now)
            try:
                await apply_condition(self.api, namespace, name, written, MANAGER)
            except kr8s.NotFoundError:
                self._written.pop(key, None)  # deleted meanwhile
                return
            except WRITE_ERRORS as err:
                log.warning(
                    "Satisfied condition not written",
                    extra={"namespace": namespace, "request": name, "error": str(err)},
                )
                return
            self._written[key] = Written(
                status=verdict.status,
                reason=verdict.reason,
                message=verdict.message,
                transitioned=written.last_transition_time,
                at=self.clock.monotonic(),
            )
            self.metrics.satisfied_condition_writes.labels(verdict.status, verdict.reason).inc()
            if verdict.status != "False":
                self._told.pop(key, None)  # met again: the next shortfall is news again
                return
            told = self._told.setdefault(key, set())
            if verdict.reason in told or self.on_unsatisfied is None:
                return
            told.add(verdict.reason)
            try:
                await self.on_unsatisfied(namespace, name, verdict.reason, verdict.message)
            except kr8s.ServerError as err:
                log.info("event not written", extra={"request": name, "error": str(err)})
            except Exception:  # Events explain; one that fails stops nothing
                log.exception("event not written", extra={"request": name})
