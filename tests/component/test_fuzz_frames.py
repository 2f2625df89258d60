"""Hypothesis over a real shard on real gRPC: random and adversarial OperatorMessage
sequences (the generators of `bigfleet bench fuzz`). The shard stays up and cycling,
every stream is either open with every frame acknowledged or ended with a non-OK
status, no frame moves a provider machine, and a well-behaved operator is served after.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigfleet.bench.fuzz import Target, machines, sequence

T = TypeVar("T")


class _Loop:
    """An event loop on a thread, so one shard serves every hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Loop, Target]]:
    loop = _Loop()
    the_target = loop.run(Target.start(tmp_path_factory.mktemp("fuzz")))
    yield loop, the_target
    loop.run(the_target.stop())
    loop.close()


_numbers = iter(range(10**9))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rng=st.randoms(use_true_random=False), streams=st.integers(1, 3))
def test_fuzzed_streams_end_only_themselves(
    target: tuple[_Loop, Target], rng: random.Random, streams: int
) -> None:
    loop, shard = target
    before = loop.run(_machines(shard))
    sequences = [sequence(rng, f"fuzz-{next(_numbers)}") for _ in range(streams)]
    outcomes = loop.run(_play_all(shard, sequences))
    for frames, outcome in zip(sequences, outcomes, strict=True):
        kinds = [f.kind for f in frames]
        assert not outcome.hung, f"neither acknowledged nor ended: {kinds}"
        assert outcome.status != grpc.StatusCode.OK, f"ended with OK: {kinds}"
    assert shard.alive
    assert loop.run(_machines(shard)) == before  # refused or not, no frame moved a machine


def test_after_fuzzing_the_shard_cycles_and_serves_a_well_behaved_operator(
    target: tuple[_Loop, Target],
) -> None:
    loop, shard = target
    assert shard.alive
    assert loop.run(shard.cycling())
    assert loop.run(shard.serve_good())
    assert shard.shard.metrics.session_rejected.labels("undecodable")._value.get() > 0


async def _machines(shard: Target) -> list[tuple[str, int, str]]:
    return machines(shard.fleet)


async def _play_all(shard: Target, sequences: list[Any]) -> list[Any]:
    return list(await asyncio.gather(*(shard.play(frames) for frames in sequences)))
