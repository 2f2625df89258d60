"""The shard process, composed: the ShardService, and around it the coordinator client
and the Shard resource when they are configured. `bigfleet shard` runs `run`.

The coordinator client and the Shard publisher are supervised loops of the service's
`Loops` (restarted after an unexpected error, and part of /healthz); the kopf
controls run as they are (kopf handles its own failures)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from bigfleet.shard.coordclient import CoordinatorClient
from bigfleet.shard.runtime.service import ShardService
from bigfleet.shard.settings import ShardIdentityError, ShardSettings
from bigfleet.supervise import supervise

__all__ = ["ShardIdentityError", "ShardSettings", "run"]

Part = Coroutine[Any, Any, object]


async def _resource_parts(
    service: ShardService, kubeconfig: str | None, stop: asyncio.Event
) -> list[Part]:
    """The Shard resource's publisher and the kopf handlers applying its spec."""
    # Imported here: kopf and kr8s load only in a shard that publishes its resource.
    import kr8s.asyncio

    from bigfleet.shard.runtime.resource import ShardResource, run_controls

    api = await kr8s.asyncio.api(kubeconfig=kubeconfig)
    resource = ShardResource(service, api)
    publisher = service.loops.run(
        "shard_resource", resource.run, max_period_s=resource.stuck_after_s
    )
    return [publisher, run_controls(service, kubeconfig, stop)]


async def run(settings: ShardSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; the shard needs no coordinator (static stability).

    Raises ShardIdentityError before serving when its TLS files cannot be used."""
    service = ShardService(settings)
    resource = (
        await _resource_parts(service, settings.kubeconfig, stop)
        if settings.kubeconfig or settings.in_cluster
        else []
    )
    parts: list[Part] = [service.run(), *resource]
    if settings.coordinator_addr:
        client = CoordinatorClient(
            settings.coordinator_addr,
            service,
            settings.coordinator_heartbeat_s,
            handler=service.instructions.handle,
            credentials=service.credentials,
            term_file=settings.data_dir / "coordinator-term",
        )
        parts.append(
            service.loops.run(
                "shard_coordinator_client", client.run, max_period_s=client.stuck_after_s()
            )
        )
    await supervise(stop, *parts)
