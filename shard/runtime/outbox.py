"""Outbox: the frames waiting to go to one cluster's operator.

Coalescing frames (NodeStateUpdate, AvailableCapacityUpdate) keep only the
newest per `supersedes_key`. Bootstrap requests and reclaim instructions are
never dropped; the cap evicts the oldest coalescing frames first. A writer
task awaits `next()`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from bigfleet.wire import shard_pb2

DEFAULT_CAP = 1024  # frames per cluster


def supersedes_key(frame: shard_pb2.ShardMessage) -> str:
    """The coalescing key of a frame; empty for frames that must each be delivered."""
    kind = frame.WhichOneof("payload")
    if kind == "node_state_update":
        return frame.node_state_update.supersedes_key or (
            f"node:{frame.node_state_update.machine_id}"
        )
    if kind == "available_capacity":
        return frame.available_capacity.supersedes_key
    return ""


class Outbox:
    def __init__(self, cap: int = DEFAULT_CAP, on_drop: Callable[[], None] = lambda: None) -> None:
        self.cap = cap
        self._on_drop = on_drop
        # Insertion order is delivery order; coalescing frames keyed, others by sequence.
        self._frames: OrderedDict[str, shard_pb2.ShardMessage] = OrderedDict()
        self._sequence = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: shard_pb2.ShardMessage) -> None:
        key = supersedes_key(frame)
        if key:
            # Newest wins and takes the newest place in line.
            self._frames.pop(key, None)
            self._frames[key] = frame
        else:
            self._sequence += 1
            self._frames[f"#{self._sequence}"] = frame
        while len(self._frames) > self.cap and self._evict_oldest_coalescing():
            pass
        self._ready.set()

    def _evict_oldest_coalescing(self) -> bool:
        for key in self._frames:
            if not key.startswith("#"):
                del self._frames[key]
                self._on_drop()
                return True
        return False  # only must-deliver frames left: keep them all

    async def next(self) -> shard_pb2.ShardMessage:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        _, frame = self._frames.popitem(last=False)
        return frame
