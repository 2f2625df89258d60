"""The Satisfied condition through the real chain: the operator reads the real shard's
verdicts (ShardRead.InspectNeeds) and writes them on the CapacityRequests, beside the
phase and any other condition, and `kubectl get` shows them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import CapacityRequest
from bigfleet.operators.operator.app import OperatorSettings, run
from tests.cluster.test_chain import Chain, request
from tests.cluster.test_printer_columns import _header, _row
from tests.support.waiting import until


class VerdictChain(Chain):
    """The chain of test_chain.py with the verdict poller ticking fast."""

    def start(self) -> None:
        shard_port = self.shard_port = self.backend.run(self._start_backend())
        self.stop_operator = asyncio.Event()
        settings = OperatorSettings(
            cluster_id="chain",
            shard_address=f"127.0.0.1:{shard_port}",
            kubeconfig=self.cp.kubeconfig_path,
            rollup_interval_s=0.5,
            verdict_interval_s=0.3,
            metrics_addr="0",
        )

        async def operator() -> None:
            self.stop_operator = asyncio.Event()
            await run(settings, self.stop_operator)

        self.operator = asyncio.run_coroutine_threadsafe(operator(), self.front.loop)


@pytest.fixture
def chain(control_plane: LocalControlPlane, tmp_path: Path) -> Iterator[Chain]:
    the_chain = VerdictChain(control_plane, tmp_path / "data")
    the_chain.start()
    yield the_chain
    the_chain.stop()


def _condition(cr: dict[str, Any], kind: str = "Satisfied") -> dict[str, Any] | None:
    for c in (cr.get("status") or {}).get("conditions") or ():
        if c.get("type") == kind:
            return dict(c)
    return None


async def test_bound_requests_are_satisfied_and_an_impossible_one_says_why(
    api: kr8s.asyncio.Api, namespace: str, chain: Chain, control_plane: LocalControlPlane
) -> None:
    await CapacityRequest(request("fits", namespace, {"cpu": "4"}), api=api).create()
    impossible = request("metal", namespace, {"cpu": "4"})
    impossible["spec"]["requirements"][0]["values"] = ["m6i.metal"]  # no such machines
    await CapacityRequest(impossible, api=api).create()

    async def read(name: str) -> dict[str, Any]:
        found = await CapacityRequest.get(name, namespace=namespace, api=api)
        return dict(found.raw)

    async def condition_of(name: str, status: str) -> dict[str, Any] | None:
        found = _condition(await read(name))
        return found if found is not None and found["status"] == status else None

    met = await until(lambda: condition_of("fits", "True"), "fits Satisfied=True", 90)
    assert met["reason"] == "Satisfied" and met["message"]
    unmet = await until(lambda: condition_of("metal", "False"), "metal Satisfied=False", 90)
    assert unmet["reason"] == "NoMatchingSupply"
    assert unmet["message"].strip()
    for name in ("fits", "metal"):  # the phase keeps its meaning
        assert (await read(name))["status"]["phase"] == "Acknowledged"

    async def warned() -> bool:
        found = [
            dict(e.raw)
            async for e in api.async_get("events", namespace=namespace)
            if not isinstance(e, dict)
        ]
        return any(
            e["involvedObject"]["name"] == "metal"
            and e.get("reason") == "NoMatchingSupply"
            and e.get("type") == "Warning"
            for e in found
        )

    await until(warned, "a NoMatchingSupply Warning Event on metal")

    # Someone replaces the conditions wholesale (a merge patch): the operator's condition
    # comes back, and the other one stays beside it.
    translatable = {
        "type": "Translatable",
        "status": "True",
        "reason": "Translated",
        "message": "ok",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }
    fits = await CapacityRequest.get("fits", namespace=namespace, api=api)
    await fits.patch({"status": {"conditions": [translatable]}}, subresource="status")

    async def both() -> bool:
        cr = await read("fits")
        again = _condition(cr)
        return _condition(cr, "Translatable") == translatable and bool(
            again and again["status"] == "True"
        )

    await until(both, "Satisfied back beside Translatable", 60)

    narrow = control_plane.kubectl("get", "capacityrequests", "-n", namespace).stdout
    assert _header(narrow) == ["NAME", "PHASE", "SATISFIED", "PRIORITY", "AGE"]
    assert _row(narrow, "fits")["SATISFIED"] == "True"
    assert _row(narrow, "metal")["SATISFIED"] == "False"
    wide = control_plane.kubectl("get", "crs", "-n", namespace, "-o", "wide").stdout
    assert _header(wide)[:5] == ["NAME", "PHASE", "SATISFIED", "REASON", "PRIORITY"]
    assert _row(wide, "metal")["REASON"] == "NoMatchingSupply"
    assert _row(wide, "fits")["REASON"] == "Satisfied"


async def _explain(chain: VerdictChain, *args: str) -> tuple[int, str]:
    """`bigfleet explain ...` as a user runs it: its own process, the real API server."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bigfleet.cli", "explain", *args,
        "--shard", f"127.0.0.1:{chain.shard_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_explain_reads_the_request_and_asks_the_real_shard(
    api: kr8s.asyncio.Api, namespace: str, chain: VerdictChain, control_plane: LocalControlPlane
) -> None:
    await CapacityRequest(request("fits", namespace, {"cpu": "4"}), api=api).create()
    impossible = request("metal", namespace, {"cpu": "4"})
    impossible["spec"]["requirements"][0]["values"] = ["m6i.metal"]
    await CapacityRequest(impossible, api=api).create()

    async def judged() -> bool:
        crs = [dict(c.raw) async for c in api.async_get(CapacityRequest, namespace=namespace)]
        return len(crs) == 2 and all(_condition(c) is not None for c in crs)

    await until(judged, "both requests judged", 90)
    kubeconfig = control_plane.kubeconfig_path
    where = ["-n", namespace, "--cluster-id", "chain", "--kubeconfig", str(kubeconfig)]

    code, out = await _explain(chain, "capacityrequest", "metal", *where)
    assert code == 0, out
    assert "waiting: no machine matching instance type m6i.metal" in out
    code, out = await _explain(chain, "capacityrequest", "fits", *where, "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["capacityrequest"]["name"] == "fits"
    assert data["verdict"]["reason"] == "Satisfied"

    code, out = await _explain(chain, "capacityrequest", "nope", *where)
    assert code == 1 and f"CapacityRequest {namespace}/nope not found" in out

    code, out = await _explain(chain, "cluster", "chain")
    assert code == 0, out
    assert "NoMatchingSupply" in out and "Satisfied" in out
