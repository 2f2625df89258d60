"""ShardRead.InspectNeeds: the last cycle's verdict per need, read-only, on the shard's port.

Rows come in demand order (priority desc, arrival asc, cluster asc), after a
header naming the cycle they were computed in. Paging (a BigFleet extension,
`page_token`/`next_page_token`) serves every page of one walk from the same
cycle: the last few cycles' verdict sheets are kept, and a token names the shard
process, its cycle and the next row. A token from a cycle no longer kept, or from
an earlier run of the shard, is ABORTED, and the client starts again from the
first page. A page holds at most MAX_PAGE_ROWS rows whatever the limit asked.

Each caller (its certificate's identity under mutual TLS, else its host) runs at
most MAX_CALLS_PER_CALLER calls at once and all callers together MAX_CALLS; more
are RESOURCE_EXHAUSTED at once. Each call has CALL_LIMIT_S to take its rows, so a
slow reader holds its own slots only, and only for a while.

Under mutual TLS readonly and admin identities read every cluster; a cluster's
own identity (its operator) reads that cluster's rows and no other's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

import grpc

from bigfleet import k8snames, tls
from bigfleet.shard import codec
from bigfleet.shard.engine.verdicts import Reason, Row, VerdictSheet
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.wire import provider_pb2, shardread_pb2, shardread_pb2_grpc

KEPT_SHEETS = 4  # cycles a paging walk may span before it must start again
MAX_TOKEN_CHARS = 256
MAX_PAGE_ROWS = 1000  # per call, also when the caller set no limit
MAX_CALLS = 64  # calls served at once, all callers together
MAX_CALLS_PER_CALLER = 2
CALL_LIMIT_S = 30.0  # one call's time to take its page

_REASONS = {
    Reason.PRIORITY_STARVED: shardread_pb2.UNMET_REASON_PRIORITY_STARVED,
    Reason.NO_MATCHING_SUPPLY: shardread_pb2.UNMET_REASON_NO_MATCHING_SUPPLY,
    Reason.TOPOLOGY_UNSATISFIABLE: shardread_pb2.UNMET_REASON_TOPOLOGY_UNSATISFIABLE,
    Reason.PREEMPTION_EXHAUSTED: shardread_pb2.UNMET_REASON_PREEMPTION_EXHAUSTED,
    # Satisfied, and Preempting (victims found for all of it), carry no unmet reason.
}


@dataclass(frozen=True, slots=True)
class _Stamped:
    sheet: VerdictSheet
    computed_at_ns: int


class VerdictShelf:
    """The last few cycles' verdict sheets, stamped with the wall-clock time they came in."""

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._sheets: deque[_Stamped] = deque(maxlen=KEPT_SHEETS)
        # Names this process in page tokens: cycle numbers start again after a restart.
        self.run = secrets.randbelow(1 << 31)

    def put(self, sheet: VerdictSheet | None) -> None:
        if sheet is not None and (not self._sheets or self._sheets[-1].sheet is not sheet):
            self._sheets.append(_Stamped(sheet, self._now_ns()))

    def latest(self) -> _Stamped | None:
        return self._sheets[-1] if self._sheets else None

    def of_cycle(self, cycle: int) -> _Stamped | None:
        return next((s for s in self._sheets if s.sheet.cycle == cycle), None)


def encode_token(run: int, cycle: int, position: int) -> str:
    raw = json.dumps([run, cycle, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str) -> tuple[int, int, int]:
    """(run, cycle, position) of a page token; ValueError naming the problem."""
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"page_token has {len(token)} characters, over {MAX_TOKEN_CHARS}")
    try:
        run, cycle, position = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("page_token is not a token this shard issued") from None
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (run, cycle, position)
    ):
        raise ValueError("page_token is not a token this shard issued")
    return run, cycle, position


def _resources(vector: Mapping[str, int]) -> provider_pb2.Resources:
    return provider_pb2.Resources(resources=codec.vector_to_wire(vector))


def need_view(row: Row) -> shardread_pb2.NeedView:
    need, v = row.need, row.verdict
    view = shardread_pb2.NeedView(
        need=codec.need_to_wire(need),
        cluster_id=need.cluster,
        arrival_unix_nanos=need.arrival,
        profile_fingerprint=need.fingerprint,
        satisfied=v.satisfied,
        claimed_machine_count=v.claimed,
        bootstrap_count=v.bootstraps,
        provision_count=v.provisions,
        same_domain=v.same_domain,
        same_satisfiable=v.same_satisfiable,
        acquisition_parked=v.parked,
        parked_age_cycles=v.parked_age,
        age_cycles_unmet=v.cycles_unmet,
        unmet_reason=_REASONS.get(v.reason, shardread_pb2.UNMET_REASON_UNSPECIFIED),
        same_candidates=[
            shardread_pb2.DomainCoverage(
                domain=d.domain, coverage_per_mille=d.per_mille, satisfiable=d.satisfiable
            )
            for d in v.candidates
        ],
    )
    if not v.satisfied:
        view.residual_deficit.CopyFrom(_resources(v.deficit))
    if v.matching is not None:
        view.matching_supply.CopyFrom(
            shardread_pb2.MatchingSupply(
                idle=v.matching.idle,
                configured=v.matching.configured,
                speculative=v.matching.speculative,
                in_transition=v.matching.in_transition,
                capped=v.matching.capped,
            )
        )
    if v.preemption is not None:
        view.preemption.CopyFrom(
            shardread_pb2.PreemptionSummary(
                victims_found=v.preemption.victims,
                capacity_freed=_resources(v.preemption.freed),
            )
        )
    return view


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, why: str) -> NoReturn:
    await context.abort(code, why)
    raise AssertionError("unreachable: abort raises")


def _caller(context: grpc.aio.ServicerContext) -> str:
    """Who the call counts against: the certificate's identity, else the peer's host (a
    client's ports change with every connection, its host does not)."""
    identity = tls.peer_identity(context)
    if identity is not None:
        return str(identity)
    peer = context.peer() or "unknown"
    return peer.rpartition(":")[0] or peer


def _refusal(request: shardread_pb2.InspectNeedsRequest) -> str | None:
    if request.limit < 0:
        return f"limit must be 0 (a full page) or positive, got {request.limit}"
    if request.cluster_id:
        problem = k8snames.dns1123_subdomain_error(request.cluster_id)
        if problem is not None:
            return f"cluster_id: {problem}"
    return None


class ShardReadService(shardread_pb2_grpc.ShardReadServicer):
    def __init__(self, shelf: VerdictShelf, metrics: ShardMetrics) -> None:
        self.shelf = shelf
        self.metrics = metrics
        self._calls: dict[str, int] = {}  # by caller

    async def InspectNeeds(  # writes its frames with context.write, yields none
        self, request: shardread_pb2.InspectNeedsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        problem = _refusal(request)
        if problem is not None:
            self._refused("invalid_argument")
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        await self._authorize(request.cluster_id, context)
        caller = _caller(context)
        if self._calls.get(caller, 0) >= MAX_CALLS_PER_CALLER:
            self._refused("resource_exhausted")
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{caller} already has {MAX_CALLS_PER_CALLER} InspectNeeds calls in flight; "
                "read them to the end first",
            )
        if sum(self._calls.values()) >= MAX_CALLS:
            self._refused("resource_exhausted")
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{MAX_CALLS} InspectNeeds calls are being served; try again shortly",
            )
        self._calls[caller] = self._calls.get(caller, 0) + 1
        try:
            async with asyncio.timeout(CALL_LIMIT_S):
                await self._serve(request, context)
        except TimeoutError:
            self._refused("deadline_exceeded")
            await _abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the page was not taken within {CALL_LIMIT_S:.0f} s; ask for fewer rows",
            )
        finally:
            left = self._calls[caller] - 1
            if left:
                self._calls[caller] = left
            else:
                del self._calls[caller]

    async def _serve(
        self, request: shardread_pb2.InspectNeedsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        cluster = request.cluster_id
        stamped, start = await self._page_start(request, context)
        if stamped is None:  # no cycle yet: a header saying so, no rows
            self.metrics.inspect_requests.labels("ok").inc()
            header = shardread_pb2.InspectNeedsHeader()
            await context.write(shardread_pb2.InspectNeedsResponse(header=header))
            return
        sheet = stamped.sheet
        limit = min(request.limit or MAX_PAGE_ROWS, MAX_PAGE_ROWS)
        page = sheet.positions(cluster, start, limit + 1)
        next_token = ""
        if len(page) > limit:
            next_token = encode_token(self.shelf.run, sheet.cycle, page[limit])
            page = page[:limit]
        self.metrics.inspect_requests.labels("ok").inc()
        await context.write(
            shardread_pb2.InspectNeedsResponse(
                header=shardread_pb2.InspectNeedsHeader(
                    cycle=sheet.cycle,
                    computed_at_unix_nanos=stamped.computed_at_ns,
                    total_needs=sheet.count(cluster),
                    next_page_token=next_token,
                )
            )
        )
        for position in page:  # assembled one by one: a long page never sits in memory whole
            view = need_view(sheet.row(position))
            await context.write(shardread_pb2.InspectNeedsResponse(need=view))

    async def _authorize(self, cluster: str, context: grpc.aio.ServicerContext) -> None:
        """A cluster's identity reads its own rows only; the interceptor checked the role."""
        identity = tls.peer_identity(context)
        if identity is None or identity.role is not tls.Role.CLUSTER:
            return
        if cluster != identity.name:
            self._refused("permission_denied")
            asked = f"cluster {cluster!r}" if cluster else "every cluster"
            await _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity} may read only its own needs (cluster_id {identity.name!r}), "
                f"not {asked}; readonly and admin identities read every cluster",
            )

    async def _page_start(
        self, request: shardread_pb2.InspectNeedsRequest, context: grpc.aio.ServicerContext
    ) -> tuple[_Stamped | None, int]:
        if not request.page_token:
            return self.shelf.latest(), 0
        try:
            run, cycle, position = decode_token(request.page_token)
        except ValueError as err:
            self._refused("invalid_argument")
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if run != self.shelf.run:
            self._refused("aborted")
            await _abort(
                context,
                grpc.StatusCode.ABORTED,
                "page_token is from an earlier run of this shard; start again without a token",
            )
        stamped = self.shelf.of_cycle(cycle)
        if stamped is None:
            self._refused("aborted")
            latest = self.shelf.latest()
            await _abort(
                context,
                grpc.StatusCode.ABORTED,
                f"page_token is from cycle {cycle}, which is no longer kept (the shard is at "
                f"cycle {latest.sheet.cycle if latest else 0}); start again without a token",
            )
        return stamped, position

    def _refused(self, code: str) -> None:
        self.metrics.inspect_requests.labels(code).inc()
