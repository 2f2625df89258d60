"""Coordinator writes made across a failover: every one acknowledged must be kept.

The probe registers a shard of its own (it reports nothing, so nothing is
rebalanced to or from it) and, while a coordinator is being killed and
replaced, keeps assigning it new made-up domains through whichever replica
accepts writes. A write counts once a replica acknowledged it; afterwards
every acknowledged domain must be listed by the coordinator. A write lost in
the failover is exactly what a leader that acknowledged before its store
committed would lose.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc

PROBE_SHARD = "scaletest-write-probe"
PROBE_KEY = "scaletest.bigfleet.io/write-probe"
_CALL_S = 2.0


class WriteProbe:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.acknowledged: list[str] = []
        self.attempts = 0
        self._next = 0

    async def _first(self, call: str, request: object) -> object:
        """The answer of the first replica that takes the call; raises the last error."""
        failure: grpc.aio.AioRpcError | None = None
        for address in self.addresses:
            async with grpc.aio.insecure_channel(address) as channel:
                method = getattr(coordinator_pb2_grpc.CoordinatorStub(channel), call)
                try:
                    return await method(request, timeout=_CALL_S)
                except grpc.aio.AioRpcError as err:
                    failure = err
        assert failure is not None
        raise failure

    async def register(self) -> None:
        await self._first(
            "ReportShard",
            pb.ShardReport(
                shard_id=PROBE_SHARD, cycle=1, timestamp_unix_nanos=time.time_ns(), shard_epoch=1
            ),
        )

    async def write_once(self) -> None:
        self.attempts += 1
        self._next += 1
        value = f"w{self._next}"
        request = pb.AssignDomainRequest(
            topology_key=PROBE_KEY, topology_value=value, shard_id=PROBE_SHARD
        )
        try:
            await self._first("AssignDomain", request)
        except grpc.aio.AioRpcError:
            return  # not acknowledged: no promise to keep
        self.acknowledged.append(value)

    async def keep_writing(self, every_s: float) -> None:
        """Until cancelled."""
        while True:
            await self.write_once()
            await asyncio.sleep(every_s)

    async def lost(self) -> list[str]:
        """Acknowledged writes the coordinator no longer lists."""
        listing = await self._first("ListDomainAssignments", pb.ListDomainAssignmentsRequest())
        assert isinstance(listing, pb.ListDomainAssignmentsResponse)
        kept = {a.topology_value for a in listing.assignments if a.topology_key == PROBE_KEY}
        return [value for value in self.acknowledged if value not in kept]
