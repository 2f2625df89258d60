"""Node readiness passed on to UpcomingNodes, once per Node rather than once per heartbeat.

The operator watches Nodes to turn an UpcomingNode Ready when its Node is. A Node's
status is written again every few seconds (kubelet heartbeats), and reading the
UpcomingNode on each of those cost the API server one GET per Node every few seconds,
for nothing once it was Ready. So a Node is looked at when it turns Ready; after that
only if its UpcomingNode did not exist yet (its writer may be behind the Node; looked
at again after `retry_absent_s`), or once it stopped being Ready or was deleted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import kr8s.asyncio

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.operators.operator.writers import mark_node_ready


def ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class ReadyNodes:
    def __init__(
        self, api: kr8s.asyncio.Api, *, retry_absent_s: float = 5.0, clock: Clock = REAL_CLOCK
    ) -> None:
        self.api = api
        self.retry_absent_s = retry_absent_s
        self.clock = clock
        # Node name -> when (monotonic) to look at its UpcomingNode again; inf: never.
        # One entry per Ready Node: it goes when the Node does.
        self._next: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._next)

    async def seen(self, event_type: str | None, node: Mapping[str, Any]) -> None:
        name = node["metadata"]["name"]
        if event_type == "DELETED" or not ready(node):
            self._next.pop(name, None)
            return
        now = self.clock.monotonic()
        if self._next.get(name, now) > now:
            return
        outcome = await mark_node_ready(self.api, name)
        self._next[name] = now + self.retry_absent_s if outcome == "absent" else math.inf
