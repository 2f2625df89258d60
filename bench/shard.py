"""`bigfleet bench shard`: roll-up ingest over many operator streams into one shard process.

The fake provider and the shard run as their own processes (`bigfleet provider
fake`, `bigfleet shard`); this process plays N operators, each sending a
roll-up as soon as the previous one is acknowledged, for a fixed time. Cycle
durations come from the shard's own /metrics histogram, before and during
the load. While the load runs, a prober opens a new cluster's stream every
`PROBE_EVERY_S` and times its Hello to the Hello's acknowledgement: what a
reconnecting operator waits. With `big_rollup`, one more stream sends a
roll-up of that many needs over and over, as a large cluster would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from bigfleet.shard.codec import MAX_NEEDS_PER_ROLLUP
from bigfleet.stats import percentiles
from bigfleet.wire import GRPC_OPTIONS, capacity_pb2, shard_pb2, shard_pb2_grpc

PROBE_EVERY_S = 0.2


@dataclass(frozen=True)
class ShardBench:
    streams: int
    seconds: float
    rollups: int
    rollups_per_s: float
    cycle_ms_idle: dict[str, float]
    cycle_ms_loaded: dict[str, float]
    compute_ms_idle: dict[str, float]  # the cycle without the wait on providers
    compute_ms_loaded: dict[str, float]
    machines: int
    hello_wait_ms: dict[str, float]  # p50, p99 and max over the probes while loaded
    hellos_over_100ms: int
    big_rollup_needs: int
    big_rollups: int  # large roll-ups acknowledged under load
    every_s: float  # each stream's roll-up period; 0: the next as soon as one is acknowledged

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _histogram(url: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of one of the shard's histograms."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def _scrape(base: str) -> tuple[dict[float, float], dict[float, float]]:
    url = f"{base}/metrics"
    return (
        _histogram(url, "bigfleet_shard_cycle_duration_seconds"),
        _histogram(url, "bigfleet_shard_cycle_compute_seconds"),
    )


def _quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """p50/p99 (ms) of the histogram's growth between two scrapes, interpolated within
    the bucket as Prometheus's histogram_quantile does."""
    delta = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = delta[-1][1] if delta else 0.0
    out: dict[str, float] = {}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        rank, lower, below = q * total, 0.0, 0.0
        value = float("inf")
        for bound, count in delta:
            if total and count >= rank:
                if bound == float("inf"):
                    value = lower  # past the last bound: the last finite bound is all we know
                else:
                    share = (rank - below) / (count - below) if count > below else 1.0
                    value = lower + (bound - lower) * share
                break
            lower, below = bound, count
        out[name] = round(value * 1000, 3)
    out["cycles"] = total
    return out


@contextlib.contextmanager
def _process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigfleet.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        proc.kill()


def _wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready")


def _need(priority: int) -> capacity_pb2.CapacityNeed:
    return capacity_pb2.CapacityNeed(
        requirements=[
            capacity_pb2.NodeSelectorRequirement(
                key="node.kubernetes.io/instance-type",
                operator=capacity_pb2.NodeSelectorRequirement.OPERATOR_IN,
                values=["m6i.2xlarge"],
            )
        ],
        aggregate_resources={"cpu": "8"},
        min_unit={"cpu": "8"},
        priority=priority,
    )


async def _operator(
    address: str,
    cluster: str,
    load_start: float,
    deadline: float,
    counter: list[int],
    needs: int = 1,
    every: float = 0.0,
    offset: float = 0.0,
) -> None:
    """Hello and one roll-up of `needs` needs at once; from `load_start + offset` a roll-up
    per ack (`every` = 0) or one every `every` seconds (when acknowledged by then) until
    `deadline`."""
    rollup = shard_pb2.OperatorMessage(
        rollup=capacity_pb2.ClusterCapacityNeeds(
            cluster_id=cluster,
            timestamp_unix_nanos=1,
            needs=[_need(100 + i % 1000) for i in range(needs)],
        )
    )
    acked = asyncio.Queue[None]()

    async def frames() -> AsyncIterator[shard_pb2.OperatorMessage]:
        yield shard_pb2.OperatorMessage(hello=shard_pb2.Hello(cluster_id=cluster))
        yield rollup
        await acked.get()
        await asyncio.sleep(max(0.0, load_start + offset - time.monotonic()))
        while (sent := time.monotonic()) < deadline:
            yield rollup
            await acked.get()
            await asyncio.sleep(max(0.0, sent + every - time.monotonic()))

    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        call = shard_pb2_grpc.ShardStub(channel).Session(frames())
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for frame in call:
                if frame.WhichOneof("payload") == "ack" and frame.ack.echo == "rollup":
                    if time.monotonic() >= load_start:
                        counter[0] += 1
                    acked.put_nowait(None)  # past the deadline the sender half-closes


async def _probe_hellos(
    address: str, load_start: float, deadline: float, waits: list[float]
) -> None:
    """From `load_start` to `deadline`, a new cluster's stream every PROBE_EVERY_S: the
    seconds from its Hello sent to the Hello's acknowledgement go to `waits`."""
    await asyncio.sleep(max(0.0, load_start - time.monotonic()))
    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        number = 0
        while time.monotonic() < deadline:
            number += 1
            hello = shard_pb2.OperatorMessage(
                hello=shard_pb2.Hello(cluster_id=f"probe-{number:05d}")
            )
            sent = time.monotonic()
            call = stub.Session(iter([hello]))
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for frame in call:
                    if frame.WhichOneof("payload") == "ack" and frame.ack.echo == "hello":
                        waits.append(time.monotonic() - sent)
                        break
            call.cancel()
            await asyncio.sleep(max(0.0, sent + PROBE_EVERY_S - time.monotonic()))


def run(
    streams: int,
    seconds: float,
    machines: int = 1000,
    stage: Callable[[str], None] = lambda _: None,
    big_rollup: int = 0,
    every: float = 0.0,
) -> ShardBench:
    """`stage` hears what the bench is doing, for a progress line; `big_rollup` > 0 adds a
    stream whose roll-ups carry that many needs; `every` > 0 paces each stream to a roll-up
    every that many seconds (0: the next as soon as the last is acknowledged)."""
    stage(f"starting the fake provider ({machines:,} machines) and a shard")
    provider_port, shard_port, metrics_port = _port(), _port(), _port()
    metrics = f"http://127.0.0.1:{metrics_port}"
    with (
        tempfile.TemporaryDirectory() as data,
        _process(
            "provider",
            "fake",
            "--listen",
            f"127.0.0.1:{provider_port}",
            "--idle",
            str(machines // 2),
            "--speculative",
            str(machines - machines // 2),
        ),
        _process(
            "--log-level",
            "ERROR",
            "shard",
            "--id",
            "shard-bench",
            "--listen",
            f"127.0.0.1:{shard_port}",
            "--provider",
            f"fake=127.0.0.1:{provider_port}",
            "--metrics-port",
            str(metrics_port),
            "--data-dir",
            str(Path(data)),
            "--cycle-interval",
            "1",
            "--max-needs-per-rollup",
            str(max(MAX_NEEDS_PER_ROLLUP, big_rollup)),
        ),
    ):
        os.environ.pop("KUBECONFIG", None)
        _wait_ready(f"{metrics}/readyz")
        counter, big_counter, waits = [0], [0], list[float]()
        address = f"127.0.0.1:{shard_port}"
        quiet_s = min(10.0, max(3.0, seconds / 3))
        connect_s = 5.0 + streams / 200  # every stream connected and its demand applied
        load_start = time.monotonic() + connect_s + quiet_s
        deadline = load_start + seconds
        marks: list[tuple[dict[float, float], dict[float, float]]] = []

        async def scrape_at(when: float) -> None:
            await asyncio.sleep(max(0.0, when - time.monotonic()))
            marks.append(await asyncio.to_thread(_scrape, metrics))

        async def tell() -> None:
            """What the bench is doing, once a second, until the load ends."""
            while (now := time.monotonic()) < deadline:
                if now < load_start - quiet_s:
                    stage(f"connecting {streams:,} operator streams")
                elif now < load_start:
                    stage(f"timing idle cycles ({load_start - now:.0f} s left)")
                else:
                    stage(
                        f"{streams:,} streams sending roll-ups: {counter[0]:,} acknowledged, "
                        f"{deadline - now:.0f} s left"
                    )
                await asyncio.sleep(1.0)

        async def load() -> None:
            big = (
                [
                    _operator(
                        address, "bench-big", load_start, deadline, big_counter, big_rollup, every
                    )
                ]
                if big_rollup
                else []
            )
            await asyncio.gather(
                tell(),
                scrape_at(load_start - quiet_s),
                scrape_at(load_start),
                _probe_hellos(address, load_start, deadline, waits),
                *big,
                *(
                    _operator(
                        address,
                        f"bench-{i:04d}",
                        load_start,
                        deadline,
                        counter,
                        every=every,
                        offset=every * i / streams,  # spread over the period, not in step
                    )
                    for i in range(streams)
                ),
            )

        asyncio.run(load())
        elapsed = time.monotonic() - load_start
        quiet_start, quiet_end = marks
        loaded_end = _scrape(metrics)
    return ShardBench(
        streams=streams,
        seconds=round(elapsed, 2),
        rollups=counter[0],
        rollups_per_s=round(counter[0] / elapsed, 1),
        cycle_ms_idle=_quantiles(quiet_start[0], quiet_end[0]),
        cycle_ms_loaded=_quantiles(quiet_end[0], loaded_end[0]),
        compute_ms_idle=_quantiles(quiet_start[1], quiet_end[1]),
        compute_ms_loaded=_quantiles(quiet_end[1], loaded_end[1]),
        machines=machines,
        hello_wait_ms=percentiles(waits, 1000) | {"max": round(max(waits, default=0) * 1000, 3)},
        hellos_over_100ms=sum(w > 0.1 for w in waits),
        big_rollup_needs=big_rollup,
        big_rollups=big_counter[0],
        every_s=every,
    )
