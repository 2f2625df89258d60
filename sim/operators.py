"""The clusters' side of the simulation: operators that are always connected.

The shard's executor talks to operators twice: it asks for a join blob before
Configure, and it sends a reclaim instruction before Drain. `StubBlobs` answers
the first itself (at once, or after a configured dwell in simulated time) with
a locally made blob, as the reference harness does. `SimOperators` keeps a
session open for every cluster that has sent a roll-up, so reclaims are sent
as in production, and reads each outbox empty after a cycle, acknowledging
reclaims, the way a live operator would keep its stream moving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bigfleet.shard.runtime.channels import Channels
from bigfleet.wire import capacity_pb2, shard_pb2


class StubBlobs:
    """A BlobSource that needs no operator: a blob naming the cluster, after `dwell_s`."""

    def __init__(self, dwell_s: float = 0.0) -> None:
        self.dwell_s = dwell_s
        self.requests = 0

    def ready(self, cluster: str) -> bool:
        return True

    async def request(
        self, cluster: str, requirements: Sequence[capacity_pb2.NodeSelectorRequirement]
    ) -> shard_pb2.BootstrapBlobResponse:
        self.requests += 1
        await asyncio.sleep(self.dwell_s)  # the loop's (simulated) time
        return shard_pb2.BootstrapBlobResponse(user_data=f"join {cluster}".encode())


class SimOperators:
    def __init__(self, channels: Channels) -> None:
        self.channels = channels
        self.frames: dict[str, int] = {}  # frames read per payload kind

    def connect(self, cluster: str) -> None:
        """Open the cluster's session, once: its operator dialled in before its roll-up."""
        if not self.channels.get(cluster).connected:
            self.channels.install(cluster)

    async def pump(self) -> None:
        """Read every connected cluster's outbox empty; acknowledge reclaim instructions."""
        for cluster in self.channels.connected():
            channel = self.channels.get(cluster)
            while len(channel.outbox):
                frame = await channel.outbox.next()  # does not wait: a frame is there
                kind = frame.WhichOneof("payload") or ""
                self.frames[kind] = self.frames.get(kind, 0) + 1
                if kind == "reclaim_instruction":
                    channel.reclaims.pop(frame.reclaim_instruction.instruction_id, None)
