"""The two checks corrected to agree with the reference suite, against provider stand-ins.

Each stand-in is a CapacityProvider servicer served over real gRPC around a FakeFleet,
changed in the one way the reference allows (or forbids): clamping negative values to 0,
or answering identical parallel Creates concurrently and out of order.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from bigfleet.conformance.runner import Verdict, run_suite
from bigfleet.conformance.target import Target, Token, status_of
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.server import CapacityProviderService
from bigfleet.wire import GRPC_OPTIONS, provider_pb2_grpc
from bigfleet.wire import provider_pb2 as pb

NEGATIVE = "errors/negative-arguments"
PARALLEL = "idempotency/parallel-creates"
Request = pb.CreateRequest | pb.ConfigureRequest | pb.DrainRequest | pb.DeleteRequest


def _clamped(request: Request) -> None:
    request.shard_epoch = max(0, request.shard_epoch)
    request.sequence_number = max(0, request.sequence_number)
    if isinstance(request, pb.DrainRequest):
        request.grace_period_seconds = max(0, request.grace_period_seconds)


class Clamping(CapacityProviderService):
    """Reads a negative grace, epoch or sequence as 0 and carries on, as the reference allows."""

    async def Create(self, request, context):  # type: ignore[no-untyped-def]
        _clamped(request)
        return await super().Create(request, context)

    async def Configure(self, request, context):  # type: ignore[no-untyped-def]
        _clamped(request)
        return await super().Configure(request, context)

    async def Drain(self, request, context):  # type: ignore[no-untyped-def]
        _clamped(request)
        return await super().Drain(request, context)

    async def Delete(self, request, context):  # type: ignore[no-untyped-def]
        _clamped(request)
        return await super().Delete(request, context)


class FencesNegatives(CapacityProviderService):
    """Answers a negative value with FAILED_PRECONDITION: the code the contract keeps for fences."""

    async def _refuse(self, request: Request, context: grpc.aio.ServicerContext) -> None:
        grace = getattr(request, "grace_period_seconds", 0)
        if min(request.shard_epoch, request.sequence_number, grace) < 0:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "negative")

    async def Create(self, request, context):  # type: ignore[no-untyped-def]
        await self._refuse(request, context)
        return await super().Create(request, context)

    async def Drain(self, request, context):  # type: ignore[no-untyped-def]
        await self._refuse(request, context)
        return await super().Drain(request, context)


class Reordering(CapacityProviderService):
    """Handles Creates concurrently, the later arrivals first (each waits less than the one
    before), so identical parallel Creates are applied in the reverse of their sending order."""

    def __init__(self, fleet: FakeFleet) -> None:
        super().__init__(fleet)
        self._arrivals = itertools.count()

    async def Create(self, request, context):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.16 / (1 + next(self._arrivals)))
        return await super().Create(request, context)


async def _serve(service: type[CapacityProviderService]) -> AsyncIterator[str]:
    fleet = FleetConfig().with_quick_seeds(0, 80).build(time.monotonic)
    server = grpc.aio.server(options=GRPC_OPTIONS)
    provider_pb2_grpc.add_CapacityProviderServicer_to_server(service(fleet), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def _run(service: type[CapacityProviderService], only: str = "*") -> list[Verdict]:
    async for address in _serve(service):
        return await run_suite(address, only=only)
    raise AssertionError("unreachable")


async def test_a_clamping_provider_passes_the_negative_arguments_check_and_the_rest() -> None:
    verdicts = {v.check_id: v for v in await _run(Clamping)}
    assert verdicts[NEGATIVE].held, verdicts[NEGATIVE].line()
    assert [v.line() for v in verdicts.values() if not v.passed] == []


async def test_a_provider_answering_failed_precondition_to_negatives_fails_naming_each() -> None:
    (verdict,) = await _run(FencesNegatives, only=NEGATIVE)
    assert verdict.failure is not None
    for field in ("grace_period_seconds", "shard_epoch", "sequence_number"):
        assert f"negative {field} got FAILED_PRECONDITION" in verdict.failure


async def test_parallel_identical_creates_pass_on_a_provider_that_reorders_them() -> None:
    (verdict,) = await _run(Reordering, only=PARALLEL)
    assert verdict.held, verdict.line()


async def test_the_reordering_stand_in_really_reorders() -> None:
    # What the check used to send: eight fresh tokens in parallel. Applied last-sent first,
    # all but the first applied are rightly fenced, which is why the check now sends none.
    async for address in _serve(Reordering):
        channel = grpc.aio.insecure_channel(address)
        target = Target(provider_pb2_grpc.CapacityProviderStub(channel))
        try:
            machine = await target.fresh(pb.MACHINE_STATE_SPECULATIVE)
            tokens = [Token("s", 1, sequence) for sequence in range(1, 9)]
            codes = await asyncio.gather(*(status_of(target.create(machine, t)) for t in tokens))
        finally:
            await channel.close()
    assert codes[-1] == grpc.StatusCode.OK
    assert codes.count(grpc.StatusCode.FAILED_PRECONDITION) == 7


@pytest.mark.parametrize("service", [Clamping, Reordering])
async def test_the_stand_ins_skip_durability_rather_than_pass_it(
    service: type[CapacityProviderService],
) -> None:
    verdicts = await _run(service, only="durability/*")
    assert verdicts and all(v.skipped and not v.held for v in verdicts)
    assert all(v.line().startswith("SKIP ") for v in verdicts)
