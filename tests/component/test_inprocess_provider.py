"""The in-process fake provider answers exactly as the fake does over gRPC.

The simulator reaches the fake through `InProcessProvider` instead of the
shard's gRPC client; the same script of calls, fencing refusals and bad
requests included, must give the same answers and the same error classes
both ways.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bigfleet.errors import BigFleetError, MachineNotFound, ProviderError, StaleFencingToken
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.inprocess import InProcessProvider
from bigfleet.providers_fake.server import start as start_provider
from bigfleet.shard.runtime.provider import CapacityProvider, ProviderClient

SHARD = "shard-a"
Script = list[Callable[[], Awaitable[object]]]


def _fleet() -> FakeFleet:
    return FleetConfig().with_quick_seeds(idle=2, speculative=1).build(clock=lambda: 0.0)


def _script(current: CapacityProvider, stale: CapacityProvider) -> Script:
    return [
        lambda: current.create("spec-0"),
        lambda: current.get("spec-0"),
        lambda: current.configure("idle-0", "c1", b"join", {"bigfleet/priority": "7"}),
        lambda: current.configure("idle-0", "c1", b"join", {"bigfleet/priority": "7"}),  # a repeat
        lambda: current.list(b""),
        lambda: current.drain("idle-1", 30),  # Idle, not Configured: out of position
        lambda: current.delete("no-such-machine"),
        lambda: current.configure("idle-1", "", b"", {}),  # no cluster
        lambda: stale.drain("idle-0", 0),  # an older epoch than idle-0 has seen
        lambda: current.drain("idle-0", 0),
        lambda: current.list(b"3"),
    ]


async def _answers(script: Script) -> list[object]:
    answers: list[object] = []
    for call in script:
        try:
            answer = await call()
        except BigFleetError as err:
            answers.append((type(err).__name__, err.code, str(err)))
        else:
            answers.append(answer)
    return answers


async def test_the_same_calls_get_the_same_answers_in_process_and_over_grpc() -> None:
    remote_fleet, local_fleet = _fleet(), _fleet()
    server, port = await start_provider(remote_fleet, "127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    clients = [ProviderClient("fake", address, SHARD, 2), ProviderClient("fake", address, SHARD, 1)]
    try:
        over_grpc = await _answers(_script(clients[0], clients[1]))
        in_process = await _answers(
            _script(
                InProcessProvider(local_fleet, shard_id=SHARD, epoch=2),
                InProcessProvider(local_fleet, shard_id=SHARD, epoch=1),
            )
        )
    finally:
        for client in clients:
            await client.close()
        await server.stop(grace=None)
    assert in_process == over_grpc
    kinds = [a[0] for a in over_grpc if isinstance(a, tuple)]
    assert kinds == [
        ProviderError.__name__,
        MachineNotFound.__name__,
        "InvalidRequest",
        StaleFencingToken.__name__,
    ]
    assert remote_fleet.export() == local_fleet.export()  # machines, fence marks, counters
