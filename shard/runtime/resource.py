"""The shard's cluster-scoped `Shard` object: status published, spec applied live.

Status (inventory, demand, shortfalls, cycle p50/p99, connected clusters,
epoch, Ready/Degraded conditions) is written after cycles through kr8s, at
most once per `publish_every_s`. The spec's runtime switches are reconciled
by a kopf handler running in the shard's own event loop. Without a
kubeconfig none of this runs and the shard works the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
import kr8s
import kr8s.asyncio

from bigfleet import kopf_loop
from bigfleet.crd import GROUP, VERSION, Shard
from bigfleet.crd import models as m
from bigfleet.shard.runtime.service import ShardService
from bigfleet.shard.runtime.status import shard_status
from bigfleet.supervise import beat
from bigfleet.timestamps import rfc3339

log = logging.getLogger(__name__)


class ShardResource:
    def __init__(
        self, service: ShardService, api: kr8s.asyncio.Api, publish_every_s: float = 2.0
    ) -> None:
        self.service = service
        self.api = api
        self.name = service.settings.shard_id
        self.publish_every_s = publish_every_s
        # Liveness: a publish (kr8s calls with their own timeouts) and a pause take far less.
        self.stuck_after_s = max(120.0, 10 * publish_every_s)
        self._conditions: dict[str, dict[str, str]] = {}

    def _condition(self, kind: str, status: bool, reason: str, message: str) -> dict[str, str]:
        value = "True" if status else "False"
        previous = self._conditions.get(kind)
        since = (
            previous["lastTransitionTime"]
            if previous and previous["status"] == value
            else rfc3339()
        )
        condition = {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        }
        self._conditions[kind] = condition
        return condition

    def status(self) -> dict[str, Any]:
        service = self.service
        status = shard_status(service)
        unready = service.unready()
        ready = unready is None and service.cycles > 0
        shortfalls = int(status["shortfallCount"])  # type: ignore[call-overload]
        status["conditions"] = [
            self._condition(
                "Ready",
                ready,
                "CycleCompleted" if ready else "NotReconciled",
                "cycles run and the providers answered"
                if ready
                else unready or "waiting for the first cycle",
            ),
            self._condition(
                "Degraded",
                shortfalls > 0,
                "Shortfalls" if shortfalls else "Healthy",
                f"{shortfalls} unmet needs" if shortfalls else "all demand served",
            ),
        ]
        return status

    async def ensure(self) -> Shard:
        found = await Shard.read(self.name, self.api)  # one GET, not kr8s's list-and-wait
        if found is not None:
            return found
        shard = Shard(Shard.manifest(self.name, m.ShardSpec()), api=self.api)
        await shard.create()
        return shard

    async def publish(self) -> None:
        shard = await self.ensure()
        status = self.status()
        metadata = cast(dict[str, Any], shard.metadata)
        status["observedGeneration"] = metadata.get("generation", 0)
        await shard.patch({"status": status}, subresource="status")

    async def run(self) -> None:
        """Publish until cancelled; a failing API server degrades the dashboard, not the shard."""
        while True:
            try:
                await self.publish()
            except Exception as err:  # top of a loop: logged, counted by the next success
                log.warning("Shard status not published", extra={"error": str(err)})
            beat()
            await asyncio.sleep(self.publish_every_s)


def controls_registry(service: ShardService) -> kopf.OperatorRegistry:
    """kopf handlers applying this shard's Shard spec to the running service."""
    registry = kopf_loop.new_registry()

    def mine(name: str, **_: Any) -> bool:  # kopf passes the object's name by keyword
        return name == service.settings.shard_id

    @kopf.on.resume(GROUP, VERSION, "shards", registry=registry, when=mine)
    @kopf.on.create(GROUP, VERSION, "shards", registry=registry, when=mine)
    @kopf.on.field(GROUP, VERSION, "shards", field="spec", registry=registry, when=mine)
    def apply(spec: kopf.Spec, **_: Any) -> None:
        controls = m.ShardSpec.from_object(dict(spec))
        service.apply_controls(
            pause_acquisitions=controls.pause_acquisitions,
            pause_reclaims=controls.pause_reclaims,
            dry_run=controls.dry_run,
            cycle_interval_s=float(controls.cycle_interval_seconds),
        )

    return registry


async def run_controls(service: ShardService, kubeconfig: str | None, stop: asyncio.Event) -> None:
    """Apply the Shard spec until `stop`; kopf ending (it takes SIGTERM) stops the shard too."""
    await kopf_loop.run(
        controls_registry(service), kubeconfig, stop, ended=stop, server_timeout_s=60
    )
