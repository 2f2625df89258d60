"""A read-only mirror of coordinator state onto the Kubernetes `Shard` objects.

Only the leader writes it, every `interval_s`: for each Shard object the
shard's registration, last heartbeat, owned domains and open machine move
go under `status.coordinator`, so `kubectl get shards -o wide` and
`kubectl describe shard` show the coordinator's view next to the shard's
own. A registered shard without an object gets one (default spec). The
store stays the source of truth: nothing reads the mirror back, and a
failing API server only leaves it stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kr8s.asyncio

from bigfleet.coordinator import registry
from bigfleet.coordinator.rebalance import transfers
from bigfleet.coordinator.store import StateReader, Store
from bigfleet.crd import Shard
from bigfleet.crd import models as m
from bigfleet.timestamps import from_unix_ns, rfc3339

log = logging.getLogger(__name__)


def unregistered(leader: str, term: int) -> dict[str, Any]:
    """The mirror of a Shard object whose shard the coordinator does not know (any more)."""
    return {
        "registered": False,
        "domains": [],
        "rebalancing": "",
        "leader": leader,
        "term": term,
        "mirroredTime": rfc3339(),
    }


async def views(state: StateReader, leader: str, term: int) -> dict[str, dict[str, Any]]:
    """`status.coordinator` for every registered shard, keyed by shard id."""
    now = rfc3339()
    domains: dict[str, list[str]] = {}
    for d in await registry.domains(state):
        domains.setdefault(d.shard_id, []).append(f"{d.topology_key}={d.topology_value}")
    moving: dict[str, str] = {}
    for t in (await transfers(state)).values():
        moving[t.recipient] = f"receiving from {t.donor} ({t.tier}, {t.phase})"
        moving[t.donor] = f"giving to {t.recipient} ({t.tier}, {t.phase})"
    return {
        s.shard_id: {
            "registered": True,
            "address": s.address,
            "lastHeartbeatTime": from_unix_ns(s.last_heartbeat_unix_ns),
            "domains": domains.get(s.shard_id, []),
            "rebalancing": moving.get(s.shard_id, ""),
            "leader": leader,
            "term": term,
            "mirroredTime": now,
        }
        for s in await registry.shards(state)
    }


class StatusMirror:
    def __init__(
        self,
        api: kr8s.asyncio.Api,
        leading: Callable[[], Store | None],  # the leader's store; None while following
        leader: str,
        interval_s: float = 10.0,
    ) -> None:
        self.api = api
        self.leading = leading
        self.leader = leader
        self.interval_s = interval_s

    async def publish_once(self, store: Store) -> int:
        """Write the mirror once; returns how many Shard objects were written."""
        wanted = await views(store, self.leader, store.term)
        existing: dict[str, Any] = {
            s.name: s async for s in Shard.list(api=self.api) if isinstance(s, Shard)
        }
        for name in sorted(set(wanted) - set(existing)):
            shard = Shard(Shard.manifest(name, m.ShardSpec()), api=self.api)
            await shard.create()
            existing[name] = shard
        for name, shard in existing.items():
            view = wanted.get(name) or unregistered(self.leader, store.term)
            await shard.patch({"status": {"coordinator": view}}, subresource="status")
        return len(existing)

    async def run(self) -> None:
        while True:
            store = self.leading()
            if store is not None:
                try:
                    await self.publish_once(store)
                except Exception as err:  # top of a loop: the mirror goes stale, nothing else
                    log.warning("status mirror not written", extra={"error": str(err)})
            await asyncio.sleep(self.interval_s)
