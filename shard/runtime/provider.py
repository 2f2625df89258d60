"""Provider clients: the shard's fenced calls to its capacity providers.

Every mutating call carries (shard_id, shard_epoch, sequence_number) with a
fresh sequence per attempt; reads are unfenced. Status codes become named
errors (`bigfleet.errors.from_rpc_error`): FAILED_PRECONDITION is always
StaleFencingToken (this process is a zombie for that machine), NOT_FOUND
MachineNotFound, anything else ProviderError with the code kept.

With mutual TLS the shard presents its own certificate (bigfleet://shard/<id>,
which providers bind to the token's shard id). A channel keeps the pair it was
built with, reconnects included, so each call first looks for a rotated pair
and, once one was taken, moves to a new channel; the old one is closed once
the calls still on it have had their deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

import grpc

from bigfleet import tls
from bigfleet.errors import from_rpc_error
from bigfleet.fencing import SequenceCounter
from bigfleet.provider_requests import FencedRequests
from bigfleet.tls import Credentials
from bigfleet.wire import GRPC_OPTIONS, provider_pb2_grpc
from bigfleet.wire import provider_pb2 as pb

T = TypeVar("T")
MUTATION_DEADLINE_S = 30.0
LIST_DEADLINE_S = 120.0


class CapacityProvider(Protocol):
    """The calls the executor and reconcile make on a provider; failures raise BigFleetError."""

    async def create(self, machine_id: str) -> pb.TransitionAck: ...

    async def configure(
        self, machine_id: str, cluster: str, blob: bytes, metadata: dict[str, str]
    ) -> pb.TransitionAck: ...

    async def drain(self, machine_id: str, grace_seconds: int) -> pb.TransitionAck: ...

    async def delete(self, machine_id: str) -> pb.TransitionAck: ...

    async def get(self, machine_id: str) -> pb.Machine: ...

    async def list(self, since_revision: bytes = b"") -> pb.MachineList: ...


async def _call(awaitable: Awaitable[object], result: type[T]) -> T:
    try:
        return cast(T, await awaitable)
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from err


@dataclass
class ProviderClient:
    name: str
    address: str
    shard_id: str
    epoch: int
    sequence: SequenceCounter = field(default_factory=SequenceCounter)
    credentials: Credentials | None = None  # None: plaintext

    def __post_init__(self) -> None:
        self._requests = FencedRequests(self.shard_id, self.epoch, self.sequence)
        self._retiring: set[asyncio.Task[None]] = set()
        self._dial()

    def _dial(self) -> None:
        """A channel with the pair current now (`channel()` takes the newest coherent one)."""
        self._channel = tls.channel(self.address, self.credentials, options=GRPC_OPTIONS)
        self._stub_now = provider_pb2_grpc.CapacityProviderStub(self._channel)
        self._rotation = self.credentials.rotations if self.credentials else 0

    @property
    def _stub(self) -> provider_pb2_grpc.CapacityProviderStub:
        """The stub for the next call, on a new channel if the certificate rotated.

        Compares the rotation count rather than `refresh()`'s answer: the credentials are
        the process's, and whichever user looks first (the server's handshake, another
        client) is the one told that the pair changed.
        """
        if self.credentials is not None:
            self.credentials.refresh()
            if self.credentials.rotations != self._rotation:
                old = self._channel
                self._dial()
                task = asyncio.get_running_loop().create_task(old.close(grace=LIST_DEADLINE_S))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
        return self._stub_now

    async def create(self, machine_id: str) -> pb.TransitionAck:
        request = self._requests.create(machine_id)
        return await _call(
            self._stub.Create(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck
        )

    async def configure(
        self, machine_id: str, cluster: str, blob: bytes, metadata: dict[str, str]
    ) -> pb.TransitionAck:
        request = self._requests.configure(machine_id, cluster, blob, metadata)
        return await _call(
            self._stub.Configure(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck
        )

    async def drain(self, machine_id: str, grace_seconds: int) -> pb.TransitionAck:
        request = self._requests.drain(machine_id, grace_seconds)
        return await _call(self._stub.Drain(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck)

    async def delete(self, machine_id: str) -> pb.TransitionAck:
        request = self._requests.delete(machine_id)
        return await _call(
            self._stub.Delete(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck
        )

    async def get(self, machine_id: str) -> pb.Machine:
        return await _call(
            self._stub.Get(pb.MachineRef(id=machine_id), timeout=MUTATION_DEADLINE_S), pb.Machine
        )

    async def list(self, since_revision: bytes = b"") -> pb.MachineList:
        return await _call(
            self._stub.List(pb.ListFilter(since_revision=since_revision), timeout=LIST_DEADLINE_S),
            pb.MachineList,
        )

    async def close(self) -> None:
        await self._channel.close()
        if self._retiring:  # channels left by a rotation: their calls get a moment to end
            _, late = await asyncio.wait(self._retiring, timeout=5)
            for task in late:
                task.cancel()


def parse_provider_flag(value: str) -> tuple[str, str]:
    """`NAME=HOST:PORT` into (name, address)."""
    name, sep, address = value.partition("=")
    if not sep or not name or ":" not in address:
        raise ValueError(f"--provider {value!r} is not NAME=HOST:PORT")
    return name, address
