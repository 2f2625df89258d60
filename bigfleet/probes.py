"""/metrics, /healthz and /readyz on a long-running component's metrics port.

/healthz (liveness) answers 200 while every supervised loop of the component is
alive (`bigfleet.supervise.Loops.problems` is empty), and 503 naming the dead or
stuck loops otherwise: a restart is what helps. /readyz answers 200 only while
the component can do its job now (the shard: a provider reconcile succeeded
recently; the coordinator: a leader is known; the operator: its session to the
shard is up), and 503 with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


async def start(
    host: str,
    port: int,
    registry: CollectorRegistry,
    ready: Callable[[], bool],
    not_ready: str | Callable[[], str],
    problems: Callable[[], list[str]] | None = None,
) -> web.AppRunner:
    """Serve the probes on `host:port`. `not_ready` is the 503 text of /readyz (or a function
    giving it now); `problems` names what makes /healthz fail (None: it always answers 200)."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        found = problems() if problems is not None else []
        if not found:
            return web.Response(text="ok")
        return web.Response(status=503, text="\n".join(found))

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text=not_ready() if callable(not_ready) else not_ready)

    app = web.Application()
    app.add_routes(
        [web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
