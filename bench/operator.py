"""`bigfleet bench operator`: roll-up build time and acknowledgement throughput.

Starts its own local control plane (the cluster tier's binaries), creates N
CapacityRequests over a handful of profiles, times building the roll-up from
them (repeated), then times acknowledging all N as the operator does: one
status patch each, `ack_concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s.asyncio
from kr8s.asyncio.objects import Namespace

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, CapacityRequest, crd_dir
from bigfleet.operators.operator import rollup
from bigfleet.operators.operator.session import acknowledge
from bigfleet.stats import percentiles

Stage = Callable[[str], None]  # told each step, for a progress line


@dataclass(frozen=True)
class OperatorBench:
    crs: int
    rollup_ms: dict[str, float]  # cold: every request decoded
    rollup_steady_ms: dict[str, float]  # one request changed since the last roll-up
    needs_out: int
    ack_seconds: float

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def synthetic(n: int, namespace: str = "bench") -> list[dict[str, Any]]:
    """N requests over 10 profiles; a tenth are gang members in groups of four."""
    out = []
    for i in range(n):
        spec: dict[str, Any] = {
            "resources": {"cpu": f"{250 * (1 + i % 4)}m", "memory": "1Gi"},
            "priority": 100 * (i % 5),
            "interruptionPenalty": str(2 ** (i % 2 * 6)),
            "requirements": [
                {
                    "key": "node.kubernetes.io/instance-type",
                    "operator": "In",
                    "values": ["m6i.2xlarge"],
                }
            ],
        }
        if i % 10 == 0:
            spec["coLocation"] = {
                "topologyKey": "rack",
                "labelSelector": {"matchLabels": {"gang": str(i // 40)}},
            }
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "CapacityRequest",
                "metadata": {"name": f"cr-{i:06d}", "namespace": namespace},
                "spec": spec,
            }
        )
    return out


def time_rollups(
    crs: list[dict[str, Any]], repeats: int = 20
) -> tuple[dict[str, float], dict[str, float], int]:
    """Roll-up build times: cold (every request decoded, as after a start) and steady
    (the operator's memo; one request changed since the last roll-up, as an event does)."""
    cold, steady = [], []
    needs = 0
    for _ in range(repeats):
        start = time.perf_counter()
        built = rollup.build("bench", crs, time.time_ns())
        cold.append(time.perf_counter() - start)
        needs = len(built.message.needs)
    memo = rollup.Memo()
    current = list(crs)
    rollup.build("bench", current, time.time_ns(), memo)
    for i in range(repeats):
        current[i] = copy.deepcopy(current[i])  # a watch event brings a new object
        start = time.perf_counter()
        rollup.build("bench", current, time.time_ns(), memo)
        steady.append(time.perf_counter() - start)
    return percentiles(cold, 1000, digits=2), percentiles(steady, 1000, digits=2), needs


async def _create_and_ack(
    kubeconfig: Path, crs: list[dict[str, Any]], ack_concurrency: int, stage: Stage
) -> float:
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    await Namespace({"metadata": {"name": "bench"}}, api=api).create()
    limit = asyncio.Semaphore(32)
    created = 0

    async def create(body: dict[str, Any]) -> None:
        nonlocal created
        async with limit:
            await CapacityRequest(body, api=api).create()
        created += 1
        if created % 500 == 0 or created == len(crs):
            stage(f"created {created:,} of {len(crs):,} CapacityRequests")

    await asyncio.gather(*(create(body) for body in crs))
    built = rollup.build("bench", crs, time.time_ns())
    stage(f"acknowledging {len(built.pending):,} CapacityRequests (timed)")
    start = time.perf_counter()
    done = (await acknowledge(api, built.pending, asyncio.Semaphore(ack_concurrency))).done
    assert len(done) == len(built.pending)
    return time.perf_counter() - start


def run(n: int, ack_concurrency: int = 16, stage: Stage = lambda _: None) -> OperatorBench:
    """`stage` hears what the bench is doing, for a progress line."""
    crs = synthetic(n)
    stage(f"timing roll-ups over {n:,} CapacityRequests")
    rollup_ms, rollup_steady_ms, needs = time_rollups(crs)
    with tempfile.TemporaryDirectory() as work:
        stage("starting a local control plane")
        plane = LocalControlPlane(Path(work))
        plane.start()
        try:
            plane.apply_crds(crd_dir())
            ack_seconds = asyncio.run(
                _create_and_ack(plane.kubeconfig_path, crs, ack_concurrency, stage)
            )
        finally:
            plane.delete()
    return OperatorBench(
        crs=n,
        rollup_ms=rollup_ms,
        rollup_steady_ms=rollup_steady_ms,
        needs_out=needs,
        ack_seconds=round(ack_seconds, 2),
    )
