"""A provider under test: its stub, a fencing identity, and helpers to put machines in a state.

Over mutual TLS with a shard certificate the fencing identity is the certificate's
shard id, because a provider that binds tokens to callers (as the fake does, and as
the provider author guide recommends) takes a mutation only from the shard it
names. The suite's epochs then start at the run's wall-clock millisecond, so a
second run with the same certificate is a newer epoch, as a restarted shard's is.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import grpc

from bigfleet.tls import Credentials, Role, channel
from bigfleet.wire import GRPC_OPTIONS, provider_pb2_grpc
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState
SETTLE_TIMEOUT_S = 30.0
POLL_S = 0.005
# Reconnect quickly: the durability checks restart the provider under the same channel.
DIAL_OPTIONS = (
    *GRPC_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class CheckFailed(AssertionError):
    """A conformance expectation that did not hold; the message says which."""


class CheckSkipped(Exception):
    """The check cannot run in this setting (the message says what it needs); not a pass."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Token:
    shard_id: str
    epoch: int
    sequence: int

    def fields(self) -> dict[str, object]:
        return {
            "shard_id": self.shard_id,
            "shard_epoch": self.epoch,
            "sequence_number": self.sequence,
        }


@dataclass
class Target:
    stub: provider_pb2_grpc.CapacityProviderStub
    rpc_timeout_s: float = 30.0
    shard_id: str = field(default_factory=lambda: f"conformance-{uuid.uuid4().hex[:8]}")
    # The suite's own epoch. With `bound` every token carries `shard_id` (the caller's
    # certificate's) and fencing checks use epochs above this one instead of shards of
    # their own; unbound, each fencing check has a shard of its own and epochs from 1.
    epoch: int = 1
    bound: bool = False
    # Stops the provider and starts it again, when the suite started it (--provider-command).
    restart: Callable[[], Awaitable[None]] | None = None
    # What the checks of one category share, such as the durability category's one restart.
    shared: dict[str, object] = field(default_factory=dict)
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _used: set[str] = field(default_factory=set)

    @classmethod
    def dial(
        cls, address: str, rpc_timeout_s: float = 30.0, credentials: Credentials | None = None
    ) -> tuple[Target, grpc.aio.Channel]:
        """A target over plaintext, or over mutual TLS presenting `credentials`' certificate.

        A shard certificate makes its shard id the suite's fencing identity (`bound`).
        """
        dialled = channel(address, credentials, options=DIAL_OPTIONS)
        target = cls(provider_pb2_grpc.CapacityProviderStub(dialled), rpc_timeout_s)
        identity = credentials.identity if credentials else None
        if identity is not None and identity.role == Role.SHARD:
            target.shard_id, target.bound = identity.name, True
            target.epoch = time.time_ns() // 1_000_000
        return target, dialled

    def token(self) -> Token:
        """A fresh, strictly increasing token of the suite's own shard identity."""
        return Token(self.shard_id, self.epoch, next(self._sequence))

    def fencing_token(self, check: str, epoch: int, sequence: int) -> Token:
        """A token of a fencing check, `epoch` counted from 1 within the check.

        Unbound: a shard of the check's own, so no two checks share marks. Bound: the
        suite's shard, at `epoch` above the suite's own (the check's machines are fresh).
        """
        if self.bound:
            return Token(self.shard_id, self.epoch + epoch, sequence)
        return Token(f"{self.shard_id}-{check}", epoch, sequence)

    def unique(self, machine_id: str) -> str:
        """`machine_id`, made unique to this run when marks outlive it (bound)."""
        return f"{machine_id}-{self.epoch}" if self.bound else machine_id

    # -- calls ----------------------------------------------------------------------------

    async def create(self, machine_id: str, token: Token | None = None) -> pb.TransitionAck:
        t = token or self.token()
        request = pb.CreateRequest(
            machine_id=machine_id,
            shard_id=t.shard_id,
            shard_epoch=t.epoch,
            sequence_number=t.sequence,
        )
        return cast(pb.TransitionAck, await self.stub.Create(request, timeout=self.rpc_timeout_s))

    async def configure(
        self,
        machine_id: str,
        cluster: str = "conformance",
        metadata: dict[str, str] | None = None,
        token: Token | None = None,
    ) -> pb.TransitionAck:
        t = token or self.token()
        request = pb.ConfigureRequest(
            machine_id=machine_id,
            cluster_id=cluster,
            bootstrap_blob=b"conformance",
            shard_metadata=metadata or {},
            shard_id=t.shard_id,
            shard_epoch=t.epoch,
            sequence_number=t.sequence,
        )
        return cast(
            pb.TransitionAck, await self.stub.Configure(request, timeout=self.rpc_timeout_s)
        )

    async def drain(
        self, machine_id: str, grace: int = 0, token: Token | None = None
    ) -> pb.TransitionAck:
        t = token or self.token()
        request = pb.DrainRequest(
            machine_id=machine_id,
            grace_period_seconds=grace,
            shard_id=t.shard_id,
            shard_epoch=t.epoch,
            sequence_number=t.sequence,
        )
        return cast(pb.TransitionAck, await self.stub.Drain(request, timeout=self.rpc_timeout_s))

    async def delete(self, machine_id: str, token: Token | None = None) -> pb.TransitionAck:
        t = token or self.token()
        request = pb.DeleteRequest(
            machine_id=machine_id,
            shard_id=t.shard_id,
            shard_epoch=t.epoch,
            sequence_number=t.sequence,
        )
        return cast(pb.TransitionAck, await self.stub.Delete(request, timeout=self.rpc_timeout_s))

    async def get(self, machine_id: str) -> pb.Machine:
        request = pb.MachineRef(id=machine_id)
        return cast(pb.Machine, await self.stub.Get(request, timeout=self.rpc_timeout_s))

    async def list(
        self, states: tuple[int, ...] = (), max_results: int = 0, since: bytes = b""
    ) -> pb.MachineList:
        request = pb.ListFilter(
            states=cast(list[pb.MachineState], list(states)),
            max_results=max_results,
            since_revision=since,
        )
        return cast(pb.MachineList, await self.stub.List(request, timeout=self.rpc_timeout_s))

    # -- helpers ----------------------------------------------------------------------------

    async def settle(
        self, machine_id: str, states: set[int], timeout_s: float = SETTLE_TIMEOUT_S
    ) -> pb.Machine:
        """Poll Get until the machine is in one of `states`."""
        deadline = time.monotonic() + timeout_s
        while True:
            machine = await self.get(machine_id)
            if machine.state in states:
                return machine
            if time.monotonic() > deadline:
                wanted = ", ".join(sorted(S.Name(s) for s in states))
                raise CheckFailed(f"{machine_id} stuck in {S.Name(machine.state)}, wanted {wanted}")
            await asyncio.sleep(POLL_S)

    async def fresh(self, state: int) -> str:
        """An unused machine brought to `state` (Speculative, Idle or Configured)."""
        listing = await self.list((S.MACHINE_STATE_SPECULATIVE,))
        candidates = [m.id for m in listing.machines if m.id not in self._used]
        if not candidates:
            raise CheckFailed("the target has no unused Speculative machine left; seed more")
        machine_id = candidates[0]
        self._used.add(machine_id)
        if state == S.MACHINE_STATE_SPECULATIVE:
            return machine_id
        await self.create(machine_id)
        await self.settle(machine_id, {S.MACHINE_STATE_IDLE})
        if state == S.MACHINE_STATE_IDLE:
            return machine_id
        await self.configure(machine_id)
        await self.settle(machine_id, {S.MACHINE_STATE_CONFIGURED})
        return machine_id


async def status_of(call: object) -> grpc.StatusCode:
    """The status code an awaited call failed with, or OK."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK
