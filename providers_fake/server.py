"""The fake provider served over gRPC: CapacityProvider on grpc.aio around a FakeFleet.

Under mutual TLS it is also the worked example of the provider-side identity
check (ADR 0017, docs/provider-author-guide.md): a mutation is taken only from
the shard its fencing token names, `bigfleet://shard/<token shard_id>`; reads
take any caller with a BigFleet identity. On plaintext there is no identity and
no check (the service is told which it serves: on a plaintext connection gRPC's
auth context still names a transport, "insecure").

With a journal (`--state`) every answer waits until the changes before it are on
disk: an acknowledged mutation, an advanced fence mark (also of a refused call)
and a revision a reader was shown all survive a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from bigfleet.errors import BigFleetError, IdentityRejected, abort_with
from bigfleet.fencing import FencingToken
from bigfleet.providers_fake import calls
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.tls import Credentials, Identity, Role, add_port, peer_identity
from bigfleet.wire import GRPC_OPTIONS, provider_pb2_grpc
from bigfleet.wire import provider_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")


def check_caller(context: grpc.aio.ServicerContext, rpc: str, token: FencingToken | None) -> None:
    """Raise IdentityRejected unless the caller may make this call.

    A mutation (`token` given) needs the certificate of the shard the token names:
    a stolen or misused certificate cannot spend another shard's fencing sequence.
    A read needs any one BigFleet identity. Only for a server with mutual TLS.
    """
    caller = peer_identity(context)  # raises for no or several identities, or TLS 1.2
    if caller is None:  # asked on mutual-TLS servers only: fail closed
        raise IdentityRejected(f"{rpc} needs a client certificate with a BigFleet identity")
    if token is None:
        return
    if not (token.shard_id or token.epoch or token.sequence):
        # The unfenced call a test harness makes: no shard to bind, but only shards mutate.
        if caller.role != Role.SHARD:
            raise IdentityRejected(f"{rpc}: only a shard may mutate machines, not {caller}")
        return
    if caller != Identity.shard(token.shard_id):
        raise IdentityRejected(
            f"{rpc}: the fencing token names shard {token.shard_id!r}, the caller is {caller}; "
            f"only {Identity.shard(token.shard_id)} may send it"
        )


class CapacityProviderService(provider_pb2_grpc.CapacityProviderServicer):
    def __init__(
        self,
        fleet: FakeFleet,
        check_identities: bool = False,
        durable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.fleet = fleet
        self.check_identities = check_identities  # served over mutual TLS
        self.durable = durable  # returns once every change so far is on disk

    async def _call(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        fn: Callable[[], T],
        token: FencingToken | None = None,
    ) -> T:
        try:
            if self.check_identities:
                check_caller(context, rpc, token)
            try:
                return fn()
            finally:  # a refused call may still have advanced a fence mark
                if self.durable is not None:
                    await self.durable()
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
            context, "Create", lambda: calls.create(self.fleet, request), calls.token(request)
        )

    async def Configure(
        self, request: pb.ConfigureRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context,
            "Configure",
            lambda: calls.configure(self.fleet, request),
            calls.token(request),
        )

    async def Drain(
        self, request: pb.DrainRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context, "Drain", lambda: calls.drain(self.fleet, request), calls.token(request)
        )

    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionAck:
        return await self._call(
            context, "Delete", lambda: calls.delete(self.fleet, request), calls.token(request)
        )

    async def Get(self, request: pb.MachineRef, context: grpc.aio.ServicerContext) -> pb.Machine:
        return await self._call(context, "Get", lambda: calls.get(self.fleet, request))

    async def List(
        self, request: pb.ListFilter, context: grpc.aio.ServicerContext
    ) -> pb.MachineList:
        return await self._call(context, "List", lambda: calls.list_machines(self.fleet, request))


async def start(
    fleet: FakeFleet,
    listen: str,
    credentials: Credentials | None = None,
    durable: Callable[[], Awaitable[None]] | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Serve `fleet` on `listen` (HOST:PORT, port 0 picks one); returns the server and port.

    With `credentials` the server speaks mutual TLS and checks callers (`check_caller`);
    with `durable` (a journal's flush) no answer leaves before the changes it follows are saved.
    """
    server = grpc.aio.server(options=GRPC_OPTIONS)
    service = CapacityProviderService(
        fleet, check_identities=credentials is not None, durable=durable
    )
    provider_pb2_grpc.add_CapacityProviderServicer_to_server(service, server)
    port = add_port(server, listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, port
