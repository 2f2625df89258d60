"""Provider clients: the shard's fenced calls to its capacity providers.

Every mutating call carries (shard_id, shard_epoch, sequence_number) with a
fresh sequence per attempt; reads are unfenced. Status codes become named
errors (`bigfleet.errors.from_rpc_error`): FAILED_PRECONDITION is always
StaleFencingToken (this process is a zombie for that machine), NOT_FOUND
MachineNotFound, anything else ProviderError with the code kept.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

import grpc

from bigfleet.errors import from_rpc_error
from bigfleet.fencing import SequenceCounter
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

    def __post_init__(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.address, options=GRPC_OPTIONS)
        self._stub = provider_pb2_grpc.CapacityProviderStub(self._channel)

    def _token(self) -> tuple[str, int, int]:
        return self.shard_id, self.epoch, self.sequence.next()

    async def create(self, machine_id: str) -> pb.TransitionAck:
        shard, epoch, seq = self._token()
        request = pb.CreateRequest(
            machine_id=machine_id, shard_id=shard, shard_epoch=epoch, sequence_number=seq
        )
        return await _call(
            self._stub.Create(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck
        )

    async def configure(
        self, machine_id: str, cluster: str, blob: bytes, metadata: dict[str, str]
    ) -> pb.TransitionAck:
        shard, epoch, seq = self._token()
        request = pb.ConfigureRequest(
            machine_id=machine_id,
            cluster_id=cluster,
            bootstrap_blob=blob,
            shard_metadata=metadata,
            shard_id=shard,
            shard_epoch=epoch,
            sequence_number=seq,
        )
        return await _call(
            self._stub.Configure(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck
        )

    async def drain(self, machine_id: str, grace_seconds: int) -> pb.TransitionAck:
        shard, epoch, seq = self._token()
        request = pb.DrainRequest(
            machine_id=machine_id,
            grace_period_seconds=grace_seconds,
            shard_id=shard,
            shard_epoch=epoch,
            sequence_number=seq,
        )
        return await _call(self._stub.Drain(request, timeout=MUTATION_DEADLINE_S), pb.TransitionAck)

    async def delete(self, machine_id: str) -> pb.TransitionAck:
        shard, epoch, seq = self._token()
        request = pb.DeleteRequest(
            machine_id=machine_id, shard_id=shard, shard_epoch=epoch, sequence_number=seq
        )
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


def parse_provider_flag(value: str) -> tuple[str, str]:
    """`NAME=HOST:PORT` into (name, address)."""
    name, sep, address = value.partition("=")
    if not sep or not name or ":" not in address:
        raise ValueError(f"--provider {value!r} is not NAME=HOST:PORT")
    return name, address
