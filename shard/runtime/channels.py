"""Cluster channels and the Shard.Session servicer.

A ClusterChannel outlives the streams of its cluster: it holds the outbox,
the bootstrap requests awaiting a blob and the reclaim instructions awaiting
an ack, so a reconnecting operator gets them again. One live Session per
cluster; a newer one replaces the older. Frames a stream cannot accept (no
Hello first, a conflicting cluster id, a roll-up that fails validation, an
oversized message) end that stream alone with a gRPC status.

With mutual TLS the Hello is bound to the caller's certificate: only
bigfleet://cluster/<id> may speak for cluster <id>, and a stream that claims
another cluster is refused before it can replace that cluster's live stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from bigfleet import logs
from bigfleet.errors import BigFleetError, IdentityRejected, abort_with
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.outbox import Outbox
from bigfleet.tls import Identity, Role, peer_identity
from bigfleet.wire import capacity_pb2, shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)


class BadFrame(BigFleetError):
    """A frame that ends its stream; `code` is the status the operator gets."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason  # metric label


class RollupSink(Protocol):
    """What the runtime offers the sessions."""

    epoch: int

    def apply_rollup(self, rollup: capacity_pb2.ClusterCapacityNeeds) -> None:
        """Apply or raise BadFrame; must not block."""

    def resync_frames(self, cluster: str) -> list[shard_pb2.ShardMessage]:
        """A NodeStateUpdate for every machine bound to `cluster`."""


@dataclass
class _PendingBootstrap:
    frame: shard_pb2.ShardMessage
    answer: asyncio.Future[shard_pb2.BootstrapBlobResponse]


@dataclass
class ClusterChannel:
    cluster: str
    outbox: Outbox
    session: StreamSession | None = None
    bootstraps: dict[str, _PendingBootstrap] = field(default_factory=dict)
    reclaims: dict[str, shard_pb2.ShardMessage] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.session is not None

    def request_bootstrap(
        self, requirements: Iterable[capacity_pb2.NodeSelectorRequirement]
    ) -> asyncio.Future[shard_pb2.BootstrapBlobResponse]:
        request_id = secrets.token_hex(8)
        frame = shard_pb2.ShardMessage(
            bootstrap_request=shard_pb2.BootstrapRequest(
                request_id=request_id, requirements=list(requirements), cluster_id=self.cluster
            )
        )
        answer: asyncio.Future[shard_pb2.BootstrapBlobResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self.bootstraps[request_id] = _PendingBootstrap(frame, answer)
        answer.add_done_callback(lambda _: self.bootstraps.pop(request_id, None))
        self.outbox.put(frame)
        return answer

    def send_reclaim(self, instruction: shard_pb2.ReclaimInstruction) -> None:
        frame = shard_pb2.ShardMessage(reclaim_instruction=instruction)
        self.reclaims[instruction.instruction_id] = frame
        self.outbox.put(frame)

    def answer_bootstrap(self, response: shard_pb2.BootstrapBlobResponse) -> None:
        pending = self.bootstraps.get(response.request_id)
        if pending is not None and not pending.answer.done():
            pending.answer.set_result(response)  # unknown or late ids are dropped

    def reissue(self) -> None:
        """Put every unanswered request back in the outbox, for a new stream."""
        for pending in self.bootstraps.values():
            self.outbox.put(pending.frame)
        for frame in self.reclaims.values():
            self.outbox.put(frame)


@dataclass(eq=False)
class StreamSession:
    cluster: str
    number: int
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class Channels:
    """Every cluster's channel, and which session currently owns it."""

    def __init__(self, metrics: ShardMetrics, outbox_cap: int) -> None:
        self._metrics = metrics
        self._outbox_cap = outbox_cap
        self._by_cluster: dict[str, ClusterChannel] = {}
        self._numbers = itertools.count(1)

    def get(self, cluster: str) -> ClusterChannel:
        channel = self._by_cluster.get(cluster)
        if channel is None:
            channel = self._by_cluster[cluster] = ClusterChannel(
                cluster, Outbox(self._outbox_cap, self._metrics.outbox_dropped.inc)
            )
        return channel

    def connected(self) -> list[str]:
        return sorted(c for c, ch in self._by_cluster.items() if ch.connected)

    def install(self, cluster: str) -> tuple[ClusterChannel, StreamSession]:
        channel = self.get(cluster)
        session = StreamSession(cluster, next(self._numbers))
        previous, channel.session = channel.session, session
        if previous is not None:
            previous.closed.set()
            self._metrics.session_lifecycle.labels("replaced").inc()
        self._metrics.session_lifecycle.labels("installed").inc()
        self._metrics.active_sessions.set(len(self.connected()))
        return channel, session

    def remove(self, channel: ClusterChannel, session: StreamSession) -> None:
        if channel.session is session:  # an older session's cleanup never evicts a newer one
            channel.session = None
            self._metrics.session_lifecycle.labels("removed").inc()
        self._metrics.active_sessions.set(len(self.connected()))


def session_policy(method: str) -> frozenset[Role]:
    """Who may call what on the shard's server (`bigfleet.tls.RequireIdentity`): a Session
    is an operator's, so cluster identities only; the shard serves nothing else."""
    return frozenset({Role.CLUSTER}) if method == "Session" else frozenset()


class SessionService(shard_pb2_grpc.ShardServicer):
    def __init__(
        self,
        channels: Channels,
        sink: RollupSink,
        metrics: ShardMetrics,
        allowed_clusters: frozenset[str] = frozenset(),
        max_frame_bytes: int = 256 * 1024 * 1024,
        *,
        mutual_tls: bool = False,
    ) -> None:
        self.channels = channels
        self.sink = sink
        self.metrics = metrics
        self.allowed = allowed_clusters
        self.max_frame_bytes = max_frame_bytes
        # Identities exist only on a mutual-TLS server; plaintext trusts the network.
        self.mutual_tls = mutual_tls

    def _hello(self, frame: shard_pb2.OperatorMessage, context: grpc.aio.ServicerContext) -> str:
        """The cluster a first frame opens a stream for; BadFrame or IdentityRejected."""
        if frame.WhichOneof("payload") != "hello" or not frame.hello.cluster_id:
            raise BadFrame(
                grpc.StatusCode.INVALID_ARGUMENT,
                "no_hello",
                "the first frame must be a Hello with a cluster_id",
            )
        cluster = frame.hello.cluster_id
        self._bind(cluster, context)  # who the caller is first, then whether it is served
        if self.allowed and cluster not in self.allowed:
            raise BadFrame(
                grpc.StatusCode.PERMISSION_DENIED,
                "unknown_cluster",
                f"cluster {cluster!r} is not served by this shard",
            )
        return cluster

    def _bind(self, cluster: str, context: grpc.aio.ServicerContext) -> None:
        """Raise IdentityRejected unless the caller's certificate is `cluster`'s (TLS only)."""
        if not self.mutual_tls:
            return  # trust-the-network mode
        presented = peer_identity(context)
        if presented != Identity.cluster(cluster):
            raise IdentityRejected(
                f"Hello claims cluster {cluster!r}, but the caller's certificate is "
                f"{presented}; only {Identity.cluster(cluster)} may open its Session"
            )

    def identity_rejected(self, method: str, why: str) -> None:
        """Count and log a refusal by the server's RequireIdentity interceptor."""
        self.metrics.session_identity_rejected.inc()
        log.warning("call refused for its identity", extra={"method": method, "error": why})

    def _ack(self, echo: str) -> shard_pb2.ShardMessage:
        return shard_pb2.ShardMessage(
            ack=shard_pb2.Acknowledgement(echo=echo, shard_epoch=self.sink.epoch)
        )

    async def Session(
        self,
        request_iterator: AsyncIterator[shard_pb2.OperatorMessage],
        context: grpc.aio.ServicerContext,
    ) -> None:
        try:
            first = await anext(aiter(request_iterator))
            # Checked before install: a refused stream never replaces the cluster's live one.
            cluster = self._hello(first, context)
        except StopAsyncIteration:
            return
        except BadFrame as err:
            self.metrics.session_rejected.labels(err.reason).inc()
            await abort_with(context, err)
        except IdentityRejected as err:
            self.metrics.session_identity_rejected.inc()
            log.warning(
                "session refused: the certificate does not name the Hello's cluster",
                extra={
                    "cluster": first.hello.cluster_id,
                    "presented_identity": _presented(context),
                },
            )
            await abort_with(context, err)
        channel, session = self.channels.install(cluster)
        with logs.bound(cluster=cluster):
            log.info(
                "session opened",
                extra={"session": session.number, "protocol_version": first.hello.protocol_version},
            )
            try:
                await self._serve(channel, session, request_iterator, context)
            finally:
                self.channels.remove(channel, session)
                log.info("session closed", extra={"session": session.number})

    async def _serve(
        self,
        channel: ClusterChannel,
        session: StreamSession,
        request_iterator: AsyncIterator[shard_pb2.OperatorMessage],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await context.write(self._ack("hello"))
        for frame in self.sink.resync_frames(channel.cluster):
            channel.outbox.put(frame)
        channel.reissue()
        failure: list[BadFrame] = []
        reader = asyncio.create_task(self._read(channel, request_iterator, failure))
        writer = asyncio.create_task(self._write(channel, session, context))
        closed = asyncio.create_task(session.closed.wait())
        try:
            await asyncio.wait({reader, writer, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer, closed):
                task.cancel()
            await asyncio.gather(reader, writer, closed, return_exceptions=True)
        if failure:
            self.metrics.session_rejected.labels(failure[0].reason).inc()
            log.warning(
                "stream closed on a bad frame",
                extra={"reason": failure[0].reason, "error": str(failure[0])},
            )
            await abort_with(context, failure[0])
        elif session.closed.is_set():
            await context.abort(grpc.StatusCode.ABORTED, "replaced by a newer session")

    async def _read(
        self,
        channel: ClusterChannel,
        request_iterator: AsyncIterator[shard_pb2.OperatorMessage],
        failure: list[BadFrame],
    ) -> None:
        try:
            async for frame in request_iterator:
                self._handle(channel, frame)
        except BadFrame as err:
            failure.append(err)

    def _handle(self, channel: ClusterChannel, frame: shard_pb2.OperatorMessage) -> None:
        size = frame.ByteSize()
        if size > self.max_frame_bytes:
            raise BadFrame(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "oversized",
                f"a {size}-byte frame exceeds the {self.max_frame_bytes}-byte limit",
            )
        kind = frame.WhichOneof("payload")
        if kind == "hello":
            if frame.hello.cluster_id != channel.cluster:
                raise BadFrame(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "conflicting_cluster",
                    f"Hello for {frame.hello.cluster_id!r} on {channel.cluster!r}'s stream",
                )
            channel.outbox.put(self._ack("hello"))
        elif kind == "rollup":
            if frame.rollup.cluster_id != channel.cluster:
                raise BadFrame(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "conflicting_cluster",
                    f"roll-up for {frame.rollup.cluster_id!r} on {channel.cluster!r}'s stream",
                )
            self.sink.apply_rollup(frame.rollup)
            channel.outbox.put(self._ack("rollup"))
        elif kind == "bootstrap_response":
            channel.answer_bootstrap(frame.bootstrap_response)
        elif kind == "reclaim_ack":
            channel.reclaims.pop(frame.reclaim_ack.instruction_id, None)
        # Unknown payloads are ignored: a newer operator may send frames we do not know.

    async def _write(
        self, channel: ClusterChannel, session: StreamSession, context: grpc.aio.ServicerContext
    ) -> None:
        while not session.closed.is_set():
            frame = await channel.outbox.next()
            await context.write(frame)


def _presented(context: grpc.aio.ServicerContext) -> str:
    """The caller's certificate identity for a log line, whatever shape it has."""
    try:
        return str(peer_identity(context))
    except IdentityRejected:
        uris = context.auth_context().get("peer_uri", [])
        return ",".join(u.decode(errors="replace") for u in uris) or "none"
