"""The fake provider in-process: the shard's CapacityProvider calls on a FakeFleet, no network.

For the simulator, which runs the shard's real executor and reconcile against
the fake without a gRPC server. Each call builds the request message the
shard's gRPC client would send, fencing token included, and hands it to the
same request-to-fleet mapping the gRPC servicer uses (`calls`). A refusal
comes back as a caller over the wire would read it: only the status code and
message travel, so the error classes match the gRPC path's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from bigfleet.errors import BigFleetError, as_received
from bigfleet.provider_requests import FencedRequests
from bigfleet.providers_fake import calls
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.wire import provider_pb2 as pb

T = TypeVar("T")


class InProcessProvider:
    """A shard's view of one fake fleet: fenced as (shard_id, epoch, next sequence)."""

    def __init__(self, fleet: FakeFleet, *, shard_id: str, epoch: int) -> None:
        self.fleet = fleet
        self.shard_id = shard_id
        self.epoch = epoch
        self.requests = FencedRequests(shard_id, epoch)

    async def _answer(self, call: Callable[[], T]) -> T:
        # A remote call always lets other tasks run before it returns; so does this one.
        await asyncio.sleep(0)
        try:
            return call()
        except BigFleetError as err:
            raise as_received(err) from err

    async def create(self, machine_id: str) -> pb.TransitionAck:
        request = self.requests.create(machine_id)
        return await self._answer(lambda: calls.create(self.fleet, request))

    async def configure(
        self, machine_id: str, cluster: str, blob: bytes, metadata: dict[str, str]
    ) -> pb.TransitionAck:
        request = self.requests.configure(machine_id, cluster, blob, metadata)
        return await self._answer(lambda: calls.configure(self.fleet, request))

    async def drain(self, machine_id: str, grace_seconds: int) -> pb.TransitionAck:
        request = self.requests.drain(machine_id, grace_seconds)
        return await self._answer(lambda: calls.drain(self.fleet, request))

    async def delete(self, machine_id: str) -> pb.TransitionAck:
        request = self.requests.delete(machine_id)
        return await self._answer(lambda: calls.delete(self.fleet, request))

    async def get(self, machine_id: str) -> pb.Machine:
        request = pb.MachineRef(id=machine_id)
        return await self._answer(lambda: calls.get(self.fleet, request))

    async def list(self, since_revision: bytes = b"") -> pb.MachineList:
        request = pb.ListFilter(since_revision=since_revision)
        return await self._answer(lambda: calls.list_machines(self.fleet, request))
