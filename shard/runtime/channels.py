"""Cluster channels and the Shard.Session servicer.

A ClusterChannel outlives the streams of its cluster: it holds the outbox,
the bootstrap requests awaiting a blob and the reclaim instructions awaiting
an ack, so a reconnecting operator gets them again. One live Session per
cluster; a newer one replaces the older. Frames a stream cannot accept (no
Hello first, a cluster id that is not a DNS-1123 subdomain, a conflicting
cluster id, a roll-up that fails validation, an oversized or undecodable
message, a new cluster beyond `max_clusters`) end that stream alone with a
non-OK gRPC status, counted in `session_rejected_total{reason}` and logged
once. Nothing a client sends ends its stream with OK or reaches past it: an
unexpected failure while handling a frame ends the stream with INTERNAL.

What a client can make the shard hold is bounded: at most `max_clusters`
channels, and the channel and per-cluster state (through `on_forget` hooks:
quarantine counters, label series) of a cluster disconnected for longer than
`retention_s` is forgotten by `sweep`. Its bound machines stay the engine's.

With mutual TLS the Hello is bound to the caller's certificate: only
bigfleet://cluster/<id> may speak for cluster <id>, and a stream that claims
another cluster is refused before it can replace that cluster's live stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

import grpc
from google.protobuf.message import DecodeError

from bigfleet import k8snames, logs
from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.errors import BigFleetError, IdentityRejected, abort_with
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.runtime.metrics import SESSION_REFUSALS, ShardMetrics
from bigfleet.shard.runtime.outbox import Outbox
from bigfleet.tls import Identity, Role, peer_identity
from bigfleet.wire import MAX_MESSAGE_BYTES, capacity_pb2, shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_CLUSTERS = 10_000
DEFAULT_RETENTION_S = 3600.0


def shown(text: str, limit: int = 64) -> str:
    """A client-chosen string for a status message, quoted, never longer than `limit`."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def clipped(text: str, limit: int = 64) -> str:
    """A client-chosen string for a log field: as sent (the JSON log quotes it), cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def session_server_options(max_frame_bytes: int) -> tuple[tuple[str, int], ...]:
    """gRPC options for the server carrying Shard.Session: the receive ceiling is the frame
    limit, so a larger frame is refused (RESOURCE_EXHAUSTED) before it is buffered whole."""
    return (
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", max_frame_bytes),
    )


class BadFrame(BigFleetError):
    """A frame that ends its stream; `code` is the status the operator gets."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        assert reason in SESSION_REFUSALS, reason  # the metric's label set is closed
        self.code = code
        self.reason = reason  # metric label


class RollupSink(Protocol):
    """What the runtime offers the sessions."""

    epoch: int

    async def decode_rollup(self, rollup: capacity_pb2.ClusterCapacityNeeds) -> list[Need]:
        """The roll-up's needs, or BadFrame; hands the event loop back while it works."""

    def commit_rollup(self, cluster: str, needs: list[Need]) -> None:
        """Make decoded needs the cluster's demand; must not block."""

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
    shard_stopping: bool = False  # closed because the shard stops, not by a newer session


class Channels:
    """Every cluster's channel, and which session currently owns it.

    At most `max_clusters` channels are opened by Hellos (`admit`); a channel without a
    session for longer than `retention_s` is forgotten by `sweep`, and every `on_forget`
    hook is told so the rest of the shard drops what it keeps per cluster.
    """

    def __init__(
        self,
        metrics: ShardMetrics,
        outbox_cap: int,
        *,
        max_clusters: int = DEFAULT_MAX_CLUSTERS,
        retention_s: float = DEFAULT_RETENTION_S,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._metrics = metrics
        self._outbox_cap = outbox_cap
        self.max_clusters = max_clusters
        self.retention_s = retention_s
        self.clock = clock
        self._by_cluster: dict[str, ClusterChannel] = {}
        self._idle_since: OrderedDict[str, float] = OrderedDict()  # oldest first
        self._forget_hooks: list[Callable[[str], None]] = []
        self._numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self._by_cluster)

    def __contains__(self, cluster: object) -> bool:
        return cluster in self._by_cluster

    def get(self, cluster: str) -> ClusterChannel:
        channel = self._by_cluster.get(cluster)
        if channel is None:
            channel = self._by_cluster[cluster] = ClusterChannel(
                cluster, Outbox(self._outbox_cap, self._metrics.outbox_dropped.inc)
            )
            self._mark_idle(cluster)
            self._metrics.clusters_known.set(len(self._by_cluster))
        return channel

    def connected(self) -> list[str]:
        return sorted(c for c, ch in self._by_cluster.items() if ch.connected)

    def admit(self, cluster: str) -> None:
        """BadFrame (RESOURCE_EXHAUSTED) when `cluster` would be one cluster too many."""
        if cluster in self._by_cluster or len(self._by_cluster) < self.max_clusters:
            return
        self.sweep()
        if len(self._by_cluster) >= self.max_clusters:
            raise BadFrame(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too_many_clusters",
                f"this shard already holds {self.max_clusters} clusters (--max-clusters)",
            )

    def install(self, cluster: str) -> tuple[ClusterChannel, StreamSession]:
        channel = self.get(cluster)
        self._idle_since.pop(cluster, None)
        session = StreamSession(cluster, next(self._numbers))
        previous, channel.session = channel.session, session
        if previous is not None:
            previous.closed.set()
            self._metrics.session_lifecycle.labels("replaced").inc()
        self._metrics.session_lifecycle.labels("installed").inc()
        self._metrics.active_sessions.set(len(self.connected()))
        return channel, session

    def close_all(self) -> None:
        """End every session because the shard is stopping: each stream closes with
        UNAVAILABLE, so its operator dials again (another replica, or this one back)."""
        for channel in self._by_cluster.values():
            if channel.session is not None:
                channel.session.shard_stopping = True
                channel.session.closed.set()

    def remove(self, channel: ClusterChannel, session: StreamSession) -> None:
        if channel.session is session:  # an older session's cleanup never evicts a newer one
            channel.session = None
            self._mark_idle(channel.cluster)
            self._metrics.session_lifecycle.labels("removed").inc()
        self._metrics.active_sessions.set(len(self.connected()))

    def on_forget(self, hook: Callable[[str], None]) -> None:
        """Call `hook(cluster)` for every cluster `sweep` forgets."""
        self._forget_hooks.append(hook)

    def sweep(self) -> list[str]:
        """Forget the clusters without a session for longer than the retention: their channel
        (outbox, unanswered reclaims) and, through the hooks, the rest of their state. A
        channel still awaiting a join blob is kept until that request is answered or times
        out. Cheap when nothing expired: only the oldest idle stamps are looked at."""
        now = self.clock.monotonic()
        forgotten: list[str] = []
        while self._idle_since:
            cluster, since = next(iter(self._idle_since.items()))
            if now - since < self.retention_s:
                break
            del self._idle_since[cluster]
            channel = self._by_cluster.get(cluster)
            if channel is None or channel.connected:
                continue
            if channel.bootstraps:
                self._idle_since[cluster] = now  # looked at again one retention later
                continue
            del self._by_cluster[cluster]
            forgotten.append(cluster)
            for hook in self._forget_hooks:
                try:
                    hook(cluster)
                except Exception:  # one hook's failure must not keep the others' state
                    log.exception("forgetting a cluster failed", extra={"cluster": cluster})
        if forgotten:
            self._metrics.clusters_forgotten.inc(len(forgotten))
            self._metrics.clusters_known.set(len(self._by_cluster))
            log.info(
                "clusters forgotten after the retention",
                extra={"count": len(forgotten), "retention_s": self.retention_s},
            )
        return forgotten

    def _mark_idle(self, cluster: str) -> None:
        self._idle_since.pop(cluster, None)
        self._idle_since[cluster] = self.clock.monotonic()


_POLICY = {
    "Session": frozenset({Role.CLUSTER}),  # an operator's stream
    # Read tooling, and an operator reading its own cluster's verdicts (the handler
    # holds a cluster identity to its own cluster).
    "InspectNeeds": frozenset({Role.READONLY, Role.ADMIN, Role.CLUSTER}),
}


def session_policy(method: str) -> frozenset[Role]:
    """Who may call what on the shard's server (`bigfleet.tls.RequireIdentity`); nothing
    else is served."""
    return _POLICY.get(method, frozenset())


class _Frames:
    """The request stream, numbered; a frame that does not parse is a BadFrame that names
    only its number (gRPC hands the deserializer's exception to the handler as is)."""

    def __init__(self, requests: AsyncIterator[shard_pb2.OperatorMessage]) -> None:
        self._requests = aiter(requests)
        self.count = 0

    def __aiter__(self) -> _Frames:
        return self

    async def __anext__(self) -> shard_pb2.OperatorMessage:
        try:
            frame = await anext(self._requests)
        except DecodeError:
            raise BadFrame(
                grpc.StatusCode.INVALID_ARGUMENT,
                "undecodable",
                f"frame {self.count + 1} is not a valid OperatorMessage",
            ) from None
        self.count += 1
        return frame


def _internal(err: Exception) -> BadFrame:
    """What the operator is told about a failure of the shard's own: nothing internal."""
    failure = BadFrame(
        grpc.StatusCode.INTERNAL, "internal", "the shard failed to handle a frame of this stream"
    )
    failure.__cause__ = err
    return failure


class SessionService(shard_pb2_grpc.ShardServicer):
    def __init__(
        self,
        channels: Channels,
        sink: RollupSink,
        metrics: ShardMetrics,
        allowed_clusters: frozenset[str] = frozenset(),
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
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
        self._check_size(frame, 1)
        if frame.WhichOneof("payload") != "hello" or not frame.hello.cluster_id:
            raise BadFrame(
                grpc.StatusCode.INVALID_ARGUMENT,
                "no_hello",
                "the first frame must be a Hello with a cluster_id",
            )
        cluster = frame.hello.cluster_id
        problem = k8snames.dns1123_subdomain_error(cluster)
        if problem is not None:
            raise BadFrame(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_cluster_id",
                f"Hello cluster_id {shown(cluster)} is not a DNS-1123 subdomain: {problem}",
            )
        self._bind(cluster, context)  # who the caller is first, then whether it is served
        if self.allowed and cluster not in self.allowed:
            raise BadFrame(
                grpc.StatusCode.PERMISSION_DENIED,
                "unknown_cluster",
                f"cluster {cluster!r} is not served by this shard",
            )
        self.channels.admit(cluster)
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

    async def _refuse(
        self, context: grpc.aio.ServicerContext, cluster: str, err: BadFrame
    ) -> NoReturn:
        """End the stream with the refusal's status: counted, and its one log line."""
        self.metrics.session_rejected.labels(err.reason).inc()
        log.warning(
            "session refused",
            extra={"cluster": clipped(cluster), "reason": err.reason, "error": str(err)},
            exc_info=err.__cause__ if err.reason == "internal" else None,
        )
        await abort_with(context, err)

    async def Session(
        self,
        request_iterator: AsyncIterator[shard_pb2.OperatorMessage],
        context: grpc.aio.ServicerContext,
    ) -> None:
        frames = _Frames(request_iterator)
        claimed = ""
        try:
            try:
                first = await anext(frames)
            except StopAsyncIteration:
                raise BadFrame(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "no_hello",
                    "the stream ended before its Hello",
                ) from None
            claimed = first.hello.cluster_id
            # Checked before install: a refused stream never replaces the cluster's live one.
            cluster = self._hello(first, context)
        except BadFrame as err:
            await self._refuse(context, claimed, err)
        except IdentityRejected as err:
            self.metrics.session_identity_rejected.inc()
            log.warning(
                "session refused: the certificate does not name the Hello's cluster",
                extra={"cluster": clipped(claimed), "presented_identity": _presented(context)},
            )
            await abort_with(context, err)
        except Exception as err:  # the shard's own failure: this stream only, never OK
            await self._refuse(context, claimed, _internal(err))
        channel, session = self.channels.install(cluster)
        with logs.bound(cluster=cluster):
            log.info(
                "session opened",
                extra={
                    "session": session.number,
                    "protocol_version": first.hello.protocol_version[:64],
                },
            )
            try:
                await self._serve(channel, session, frames, context)
            finally:
                self.channels.remove(channel, session)
                log.info("session closed", extra={"session": session.number})

    async def _serve(
        self,
        channel: ClusterChannel,
        session: StreamSession,
        frames: _Frames,
        context: grpc.aio.ServicerContext,
    ) -> None:
        await context.write(self._ack("hello"))
        for frame in self.sink.resync_frames(channel.cluster):
            channel.outbox.put(frame)
        channel.reissue()
        failure: list[BadFrame] = []
        reader = asyncio.create_task(self._read(channel, session, frames, failure))
        writer = asyncio.create_task(self._write(channel, session, context))
        closed = asyncio.create_task(session.closed.wait())
        try:
            await asyncio.wait({reader, writer, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer, closed):
                task.cancel()
            await asyncio.gather(reader, writer, closed, return_exceptions=True)
        if not failure and writer.done() and not writer.cancelled():
            error = writer.exception()
            if error is not None and not isinstance(error, asyncio.CancelledError):
                failure.append(_internal(error if isinstance(error, Exception) else Exception()))
        if failure:
            await self._refuse(context, channel.cluster, failure[0])
        elif session.shard_stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the shard is stopping; dial again")
        elif session.closed.is_set():
            await context.abort(grpc.StatusCode.ABORTED, "replaced by a newer session")

    async def _read(
        self,
        channel: ClusterChannel,
        session: StreamSession,
        frames: _Frames,
        failure: list[BadFrame],
    ) -> None:
        try:
            async for frame in frames:
                await self._handle(channel, session, frame, frames.count)
        except BadFrame as err:
            failure.append(err)
        except Exception as err:  # a bug of ours on a client's frame: that stream only
            failure.append(_internal(err))

    def _check_size(self, frame: shard_pb2.OperatorMessage, number: int) -> None:
        """A backstop for servers composed with a larger gRPC receive ceiling than the limit."""
        size = frame.ByteSize()
        if size > self.max_frame_bytes:
            raise BadFrame(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "oversized",
                f"frame {number} has {size} bytes, over the {self.max_frame_bytes}-byte limit "
                "(--max-frame-bytes)",
            )

    async def _handle(
        self,
        channel: ClusterChannel,
        session: StreamSession,
        frame: shard_pb2.OperatorMessage,
        number: int,
    ) -> None:
        self._check_size(frame, number)
        kind = frame.WhichOneof("payload")
        if kind == "hello":
            if frame.hello.cluster_id != channel.cluster:
                raise BadFrame(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "conflicting_cluster",
                    f"Hello for {shown(frame.hello.cluster_id)} on {channel.cluster!r}'s stream",
                )
            channel.outbox.put(self._ack("hello"))
        elif kind == "rollup":
            if frame.rollup.cluster_id != channel.cluster:
                raise BadFrame(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "conflicting_cluster",
                    f"roll-up for {shown(frame.rollup.cluster_id)} on {channel.cluster!r}'s stream",
                )
            needs = await self.sink.decode_rollup(frame.rollup)
            if session.closed.is_set():
                return  # replaced while decoding: the newer stream speaks for the cluster now
            self.sink.commit_rollup(channel.cluster, needs)
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
