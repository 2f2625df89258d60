"""The operator process, composed: kopf keeps a cache of CapacityRequests, the session
rolls them up to the shard, the bootstrap responder, writers and reclaim handler act on
the shard's frames, and /metrics, /healthz and /readyz serve on its own port.

The session's stream loop, its roll-up loop, the UpcomingNode collector and the
verdict poller (Satisfied conditions) are supervised loops (`bigfleet.supervise.Loops`):
restarted after an unexpected error, and /healthz fails while one is dead or stuck.
/readyz holds while the session to the shard is up, and for `ready_grace_s` after start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kopf
import kr8s
import kr8s.asyncio
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from bigfleet import kopf_loop, kube_budget, kube_wait, leader, probes, tls
from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.crd import GROUP, VERSION
from bigfleet.metrics import parse_address
from bigfleet.operators.operator import events
from bigfleet.operators.operator.bootstrap import BootstrapResponder
from bigfleet.operators.operator.capacity_requests import RequestCache
from bigfleet.operators.operator.metrics import OperatorMetrics
from bigfleet.operators.operator.ready_nodes import ReadyNodes
from bigfleet.operators.operator.session import OperatorSession
from bigfleet.operators.operator.verdicts import VerdictPoller
from bigfleet.operators.operator.writers import collect_finished
from bigfleet.recorder import Recorder
from bigfleet.supervise import Loops, beat, supervise
from bigfleet.tls import TLSFiles

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    cluster_id: str
    shard_address: str
    kubeconfig: Path | None = None  # None: kubectl's order, in-cluster last
    rollup_interval_s: float = 10.0
    ack_concurrency: int = 16
    bootstrap_template: Path | None = None
    metrics_addr: str = "0.0.0.0:8770"  # /metrics, /healthz, /readyz; "0" disables
    api_server_url: str | None = None  # for join blobs; default: the kubeconfig's server
    ca_bundle: str | None = None  # PEM; default: the kubeconfig's CA
    upcoming_retention_s: float = 3600.0  # Drained/Failed UpcomingNodes are deleted after
    tls: TLSFiles | None = None  # mutual TLS to the shard; None: plaintext
    ready_grace_s: float = 60.0  # /readyz holds this long after start without a session
    verdict_interval_s: float = 10.0  # Satisfied conditions from the shard's verdicts; 0: off
    leader_election: leader.LeaderElection | None = None  # None: this replica always works


def _connection(api: kr8s.asyncio.Api) -> tuple[str, str]:
    """The server URL and CA bundle (PEM) the operator itself reached the API server
    with, whichever way it logged in (kubeconfig or service account)."""
    ca_file = api.auth.server_ca_file
    return api.auth.server, Path(ca_file).read_text() if ca_file else ""


def _responder(api: kr8s.asyncio.Api, settings: OperatorSettings) -> BootstrapResponder:
    server, ca = _connection(api)
    template = settings.bootstrap_template.read_text() if settings.bootstrap_template else None
    return BootstrapResponder(
        api,
        settings.cluster_id,
        api_server=settings.api_server_url or server,
        ca_bundle=settings.ca_bundle or ca,
        template=template,
    )


def registry(cache: RequestCache, api: kr8s.asyncio.Api) -> kopf.OperatorRegistry:
    handlers = kopf_loop.new_registry()

    @kopf.on.event(GROUP, VERSION, "capacityrequests", registry=handlers)
    def track(event: Mapping[str, Any], **_: Any) -> None:
        cache.apply(event.get("type"), event["object"])

    nodes = ReadyNodes(api)

    @kopf.on.event("", "v1", "nodes", registry=handlers)
    async def node_ready(event: Mapping[str, Any], **_: Any) -> None:
        await nodes.seen(event.get("type"), event["object"])

    return handlers


def _collect_every_s(retention_s: float) -> float:
    return min(60.0, max(1.0, retention_s / 10))


async def _collect(api: kr8s.asyncio.Api, retention_s: float, clock: Clock) -> None:
    while True:
        beat()
        try:
            removed = await collect_finished(api, retention_s, clock)
            if removed:
                log.info("finished UpcomingNodes removed", extra={"count": len(removed)})
        except (kr8s.ServerError, ValidationError) as err:
            log.warning("UpcomingNode collection failed", extra={"error": str(err)})
        await clock.sleep(_collect_every_s(retention_s))


def credentials_for(settings: OperatorSettings) -> tls.Credentials | None:
    """The operator's certificate, which must speak for this cluster and no other."""
    credentials = tls.load(settings.tls)
    expected = tls.Identity.cluster(settings.cluster_id)
    if credentials is not None and credentials.identity != expected:
        raise ValueError(
            f"{settings.tls.cert if settings.tls else ''}: the certificate names "
            f"{credentials.identity or 'no bigfleet:// identity'}, this operator is {expected}"
        )
    return credentials


async def _until_ready(attempt: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T | None:
    return await kube_wait.until_ready(
        attempt, stop, resource="CapacityRequest", component="operator"
    )


async def run(settings: OperatorSettings, stop: asyncio.Event, clock: Clock = REAL_CLOCK) -> None:
    """Serve until `stop` is set; with leader election, only while this replica leads.

    Raises LeadershipLost when the lease could not be renewed: the process must end (and
    be restarted as a standby) rather than act beside a new leader."""
    credentials = credentials_for(settings)  # a wrong certificate fails before anything starts
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    api = await _until_ready(lambda: kr8s.asyncio.api(kubeconfig=kubeconfig), stop)
    if api is None:
        return  # stopped before Kubernetes answered
    api = kube_budget.budgeted(api)
    responder = _responder(api, settings)  # a template that does not parse fails here
    prometheus = CollectorRegistry()
    loops = Loops(prometheus, clock)
    metrics = OperatorMetrics(prometheus)
    leading: list[OperatorSession] = []  # the session, once this replica leads

    def unready() -> str | None:
        return leading[0].unready() if leading else None  # a standby is ready to take over

    address = parse_address(settings.metrics_addr)
    http = (
        await probes.start(
            *address,
            prometheus,
            lambda: unready() is None,
            lambda: unready() or "ready",
            loops.problems,
        )
        if address is not None
        else None
    )
    lock = (
        leader.LeaseLock(
            api,
            namespace=settings.leader_election.namespace,
            name=settings.leader_election.name,
            identity=settings.leader_election.identity,
            clock=clock,
        )
        if settings.leader_election is not None
        else None
    )
    try:
        if lock is not None and not await lock.acquire(stop):
            return  # stopped while standing by
        metrics.leader.set(1)
        try:
            await _lead(
                settings, api, stop, clock, credentials, responder, loops, metrics, leading, lock
            )
        finally:
            metrics.leader.set(0)
            if lock is not None:
                await lock.release()
    finally:
        if http is not None:
            await http.cleanup()


async def _lead(
    settings: OperatorSettings,
    api: kr8s.asyncio.Api,
    stop: asyncio.Event,
    clock: Clock,
    credentials: tls.Credentials | None,
    responder: BootstrapResponder,
    loops: Loops,
    metrics: OperatorMetrics,
    leading: list[OperatorSession],
    lock: leader.LeaseLock | None,
) -> None:
    """The operator's work, from the cache fill on, until `stop` or a lost lease."""
    cache = RequestCache()

    async def fill() -> bool:
        await cache.fill(api)
        return True

    # Before the first roll-up: an empty cache would withdraw all demand.
    if await _until_ready(fill, stop) is None:
        return
    recorder = Recorder(api, events.COMPONENT, uid_of=cache.uid, clock=clock)
    session = OperatorSession(
        cluster_id=settings.cluster_id,
        shard_address=settings.shard_address,
        api=api,
        responder=responder,
        rollup_interval_s=settings.rollup_interval_s,
        ack_concurrency=settings.ack_concurrency,
        list_crs=cache.list,
        metrics=metrics,
        on_untranslatable=functools.partial(events.untranslatable, recorder),
        clock=clock,
        credentials=credentials,
        loops=loops,
        ready_grace_s=settings.ready_grace_s,
        recorder=recorder,
    )
    poller = VerdictPoller(
        cluster_id=settings.cluster_id,
        shard_address=settings.shard_address,
        api=api,
        rollup=lambda: session.last_rollup,
        current=lambda namespace, name: cache.items.get((namespace, name)),
        on_unsatisfied=functools.partial(events.unsatisfied, recorder),
        metrics=metrics,
        clock=clock,
        credentials=credentials,
        interval_s=settings.verdict_interval_s,
        write_concurrency=settings.ack_concurrency,
    )
    # kopf's own stop, set once our loops are gone: stopping, kopf cancels whatever else runs.
    kopf_stop = asyncio.Event()

    retention_s = settings.upcoming_retention_s

    async def serve() -> None:
        verdict_loop = (
            [loops.run("operator_verdicts", poller.run, max_period_s=poller.stuck_after)]
            if settings.verdict_interval_s > 0
            else []
        )
        try:
            await supervise(
                stop,
                *([lock.keep(stop)] if lock is not None else []),
                loops.run("operator_session", session.run),
                loops.run(
                    "operator_upcoming_collector",
                    functools.partial(_collect, api, retention_s, clock),
                    # Liveness: a collection pass and the pause after it take far less.
                    max_period_s=max(300.0, 5 * _collect_every_s(retention_s)),
                ),
                *verdict_loop,
            )
        finally:
            kopf_stop.set()

    leading.append(session)
    log.info(
        "operator started", extra={"cluster": settings.cluster_id, "shard": settings.shard_address}
    )
    async with asyncio.TaskGroup() as group:
        # kopf ending (a signal it took, or a failure) ends the operator too.
        group.create_task(
            kopf_loop.run(registry(cache, api), settings.kubeconfig, kopf_stop, ended=stop)
        )
        await serve()
    if lock is not None and lock.lost is not None:
        raise lock.lost
