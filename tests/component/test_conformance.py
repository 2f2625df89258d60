"""The conformance suite passes against the fake provider over real gRPC, and catches breakage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bigfleet.conformance.checks import CHECKS
from bigfleet.conformance.runner import run_suite
from bigfleet.fencing import FencingToken
from bigfleet.providers_fake.config import FleetConfig, LatencyConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.server import start


async def _serve(fleet: FakeFleet) -> AsyncIterator[str]:
    server, port = await start(fleet, "127.0.0.1:0")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
async def instant_fake() -> AsyncIterator[str]:
    async for address in _serve(FleetConfig().with_quick_seeds(0, 80).build(time.monotonic)):
        yield address


@pytest.fixture
async def slow_fake() -> AsyncIterator[str]:
    config = FleetConfig(
        latency=LatencyConfig(creating=0.05, configuring=0.05, draining=0.05, deleting=0.05)
    )
    async for address in _serve(config.with_quick_seeds(0, 80).build(time.monotonic)):
        yield address


async def test_fake_passes_every_check_with_instant_transitions(instant_fake: str) -> None:
    verdicts = await run_suite(instant_fake)
    assert [v.check_id for v in verdicts] == [c.id for c in CHECKS]
    assert [v.line() for v in verdicts if not v.passed] == []
    # Only the restarting category cannot run against a provider the suite did not start.
    skipped = {v.check_id for v in verdicts if v.skipped}
    assert skipped == {c.id for c in CHECKS if c.category == "durability"}


async def test_fake_passes_every_check_with_slow_transitions(slow_fake: str) -> None:
    verdicts = await run_suite(slow_fake)
    assert [v.line() for v in verdicts if not v.passed] == []


class _UnfencedFleet(FakeFleet):
    """A provider that forgot fencing: it must fail the fencing category."""

    def _mutate(self, op, machine_id, token, **kwargs):  # type: ignore[no-untyped-def, override]
        zero = FencingToken(shard_id="", epoch=0, sequence=0)
        return super()._mutate(op, machine_id, zero, **kwargs)


async def test_suite_fails_a_provider_without_fencing() -> None:
    fleet = _UnfencedFleet(clock=time.monotonic)
    FleetConfig().with_quick_seeds(0, 80).seed_into(fleet)
    async for address in _serve(fleet):
        verdicts = await run_suite(address, only="fencing/*")
    failed = {v.check_id for v in verdicts if not v.passed}
    assert {"fencing/replay-rejected", "fencing/stale-epoch", "fencing/stale-sequence"} <= failed
