"""The fake provider served over gRPC: CapacityProvider on grpc.aio around a FakeFleet."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import grpc

from bigfleet.errors import BigFleetError, abort_with
from bigfleet.fencing import FencingToken
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.wire import GRPC_OPTIONS, provider_pb2_grpc
from bigfleet.wire import provider_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")


def _token(
    request: pb.CreateRequest | pb.ConfigureRequest | pb.DrainRequest | pb.DeleteRequest,
) -> FencingToken:
    return FencingToken(
        shard_id=request.shard_id, epoch=request.shard_epoch, sequence=request.sequence_number
    )


class CapacityProviderService(provider_pb2_grpc.CapacityProviderServicer):
    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet

    async def _call(self, context: grpc.aio.ServicerContext, rpc: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except BigFleetError as err:
            log.info(
                "provider call refused",
                extra={"rpc": rpc, "code": err.code.name, "error": str(err)},
            )
            await abort_with(context, err)

    async def Create(
        self, request: pb.CreateRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context, "Create", lambda: self.fleet.create(request.machine_id, _token(request))
        )

    async def Configure(
        self, request: pb.ConfigureRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context,
            "Configure",
            lambda: self.fleet.configure(
                request.machine_id,
                request.cluster_id,
                request.bootstrap_blob,
                dict(request.shard_metadata),
                _token(request),
            ),
        )

    async def Drain(
        self, request: pb.DrainRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context,
            "Drain",
            lambda: self.fleet.drain(
                request.machine_id, request.grace_period_seconds, _token(request)
            ),
        )

    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context, "Delete", lambda: self.fleet.delete(request.machine_id, _token(request))
        )

    async def Get(self, request: pb.MachineRef, context: grpc.aio.ServicerContext) -> pb.Machine:
        return await self._call(context, "Get", lambda: self.fleet.get(request.id))

    async def List(
        self, request: pb.ListFilter, context: grpc.aio.ServicerContext
    ) -> pb.MachineList:
        return await self._call(
            context,
            "List",
            lambda: self.fleet.list(request.states, request.max_results, request.since_revision),
        )


async def start(fleet: FakeFleet, listen: str) -> tuple[grpc.aio.Server, int]:
    """Serve `fleet` on `listen` (HOST:PORT, port 0 picks one); returns the server and port."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    provider_pb2_grpc.add_CapacityProviderServicer_to_server(CapacityProviderService(fleet), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, port
