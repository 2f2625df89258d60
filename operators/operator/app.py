"""The operator process, composed: kopf keeps a cache of CapacityRequests, the session
rolls them up to the shard, the bootstrap responder, writers and reclaim handler act on
the shard's frames, and /metrics serves on its own port.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import kr8s
import kr8s.asyncio
import yaml
from prometheus_client import CollectorRegistry

from bigfleet import metrics as metrics_http
from bigfleet.crd import GROUP, VERSION, CapacityRequest
from bigfleet.operators.operator import events
from bigfleet.operators.operator.bootstrap import BootstrapResponder
from bigfleet.operators.operator.metrics import OperatorMetrics
from bigfleet.operators.operator.session import OperatorSession
from bigfleet.operators.operator.writers import collect_finished, mark_node_ready

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    cluster_id: str
    shard_address: str
    kubeconfig: Path
    rollup_interval_s: float = 10.0
    ack_concurrency: int = 16
    bootstrap_template: Path | None = None
    metrics_addr: str = "0.0.0.0:8770"  # "0" disables
    api_server_url: str | None = None  # for join blobs; default: the kubeconfig's server
    ca_bundle: str | None = None  # PEM; default: the kubeconfig's CA
    upcoming_retention_s: float = 3600.0  # Drained/Failed UpcomingNodes are deleted after


class RequestCache:
    """CapacityRequests by (namespace, name), fed by kopf's watch; reads never hit the API."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if event_type == "DELETED":
            self.items.pop(key, None)
        else:
            self.items[key] = {
                "metadata": dict(meta),
                "spec": dict(body.get("spec") or {}),
                "status": dict(body.get("status") or {}),
            }

    async def list(self) -> list[dict[str, Any]]:
        return list(self.items.values())


def _from_kubeconfig(path: Path) -> tuple[str, str]:
    """The current context's server URL and CA bundle (PEM)."""
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    elif "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"]).read_text()
    else:
        ca = ""
    return cluster["server"], ca


def registry(cache: RequestCache, api: kr8s.asyncio.Api) -> kopf.OperatorRegistry:
    handlers = kopf.OperatorRegistry()

    @kopf.on.login(registry=handlers)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event(GROUP, VERSION, "capacityrequests", registry=handlers)
    def track(event: Mapping[str, Any], **_: Any) -> None:
        cache.apply(event.get("type"), event["object"])

    @kopf.on.event("", "v1", "nodes", registry=handlers)
    async def node_ready(event: Mapping[str, Any], **_: Any) -> None:
        node = event["object"]
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            await mark_node_ready(api, node["metadata"]["name"])

    return handlers


async def _collect(api: kr8s.asyncio.Api, retention_s: float) -> None:
    while True:
        try:
            removed = await collect_finished(api, retention_s)
            if removed:
                log.info("finished UpcomingNodes removed", extra={"count": len(removed)})
        except kr8s.ServerError as err:
            log.warning("UpcomingNode collection failed", extra={"error": str(err)})
        await asyncio.sleep(min(60.0, max(1.0, retention_s / 10)))


async def run(
    settings: OperatorSettings,
    stop: asyncio.Event,
    metrics_registry: CollectorRegistry | None = None,
) -> OperatorSession:
    """Serve until `stop` is set; returns the session for inspection."""
    api = await kr8s.asyncio.api(kubeconfig=str(settings.kubeconfig))
    server, ca = _from_kubeconfig(settings.kubeconfig)
    template = settings.bootstrap_template.read_text() if settings.bootstrap_template else None
    responder = BootstrapResponder(
        api,
        settings.cluster_id,
        api_server=settings.api_server_url or server,
        ca_bundle=settings.ca_bundle or ca,
        template=template,
    )
    cache = RequestCache()
    # Seed the cache before the first roll-up: an empty cache would withdraw all demand.
    async for cr in api.async_get(CapacityRequest, namespace=kr8s.ALL):
        if isinstance(cr, CapacityRequest):
            cache.apply("ADDED", cr.raw)
    prometheus = metrics_registry or CollectorRegistry()
    metrics = OperatorMetrics(prometheus)

    async def report(namespace: str, name: str, why: str) -> None:
        await events.untranslatable(api, namespace, name, why)

    session = OperatorSession(
        cluster_id=settings.cluster_id,
        shard_address=settings.shard_address,
        api=api,
        responder=responder,
        rollup_interval_s=settings.rollup_interval_s,
        ack_concurrency=settings.ack_concurrency,
        list_crs=cache.list,
        metrics=metrics,
        on_untranslatable=report,
    )
    http = metrics_http.serve(settings.metrics_addr, prometheus)
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.posting.enabled = False
    kopf_stop = asyncio.Event()
    watcher = asyncio.create_task(
        kopf.operator(
            registry=registry(cache, api),
            settings=kopf_settings,
            clusterwide=True,
            standalone=True,
            stop_flag=kopf_stop,
        )
    )
    streamer = asyncio.create_task(session.run())
    collector = asyncio.create_task(_collect(api, settings.upcoming_retention_s))
    log.info(
        "operator started", extra={"cluster": settings.cluster_id, "shard": settings.shard_address}
    )
    try:
        await stop.wait()
    finally:
        streamer.cancel()  # before kopf, which cancels whatever else runs when it stops
        collector.cancel()
        await asyncio.gather(streamer, collector, return_exceptions=True)
        kopf_stop.set()
        await asyncio.gather(watcher, return_exceptions=True)
        if http is not None:
            http.shutdown()
    return session
