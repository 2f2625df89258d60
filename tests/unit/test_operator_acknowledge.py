"""Acknowledging requests: one patch per request even while roll-ups outpace the writes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import kr8s
import pytest

from bigfleet.operators.operator import capacity_requests
from bigfleet.operators.operator.rollup import Translated
from bigfleet.operators.operator.session import acknowledge


def _pending(name: str) -> Translated:
    return Translated("ml", name, "Pending", (), (), (), 100, 0, 0, "", {})


class SlowApiServer:
    """Status patches that complete only when the test lets them."""

    def __init__(self, gone: frozenset[str] = frozenset()) -> None:
        self.patched: list[str] = []
        self.release = asyncio.Event()
        self.gone = gone

    async def patch_status(self, api: Any, namespace: str, name: str, status: Any) -> None:
        self.patched.append(name)
        await self.release.wait()
        if name in self.gone:
            raise kr8s.NotFoundError(name)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> SlowApiServer:
    fake = SlowApiServer(gone=frozenset({"deleted"}))
    monkeypatch.setattr(capacity_requests, "patch_status", fake.patch_status)
    return fake


async def test_later_roll_ups_do_not_patch_a_request_again_while_its_patch_is_in_flight(
    server: SlowApiServer,
) -> None:
    in_flight: set[tuple[str, str]] = set()
    limit = asyncio.Semaphore(16)
    pending = [_pending(n) for n in ("a", "b", "deleted")]
    # Three roll-ups list the same Pending requests before the first writes land.
    calls = [
        asyncio.create_task(acknowledge(None, pending, limit, in_flight))  # type: ignore[arg-type]
        for _ in range(3)
    ]
    await asyncio.sleep(0.01)
    assert sorted(server.patched) == ["a", "b", "deleted"]
    server.release.set()
    first, *later = await asyncio.gather(*calls)
    assert [t.name for t in first.done] == ["a", "b"]  # the deleted one needs none
    assert [(a.done, a.failed) for a in later] == [([], []), ([], [])]
    assert in_flight == set()  # nothing stays claimed: a failed write is tried again later

    again = await acknowledge(None, pending[:1], limit, in_flight)  # type: ignore[arg-type]
    assert [t.name for t in again.done] == ["a"] and server.patched.count("a") == 2


async def test_a_failed_write_releases_its_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(api: Any, namespace: str, name: str, status: Any) -> None:
        raise kr8s.ServerError("etcd is down")

    monkeypatch.setattr(capacity_requests, "patch_status", refused)
    in_flight: set[tuple[str, str]] = set()
    result = await acknowledge(None, [_pending("a")], asyncio.Semaphore(1), in_flight)  # type: ignore[arg-type]
    assert [(t.name, str(err)) for t, err in result.failed] == [("a", "etcd is down")]
    assert result.done == [] and in_flight == set()


def _answer(code: int) -> kr8s.ServerError:
    request = httpx.Request("PATCH", "https://k8s/capacityrequests/x/status")
    return kr8s.ServerError(f"HTTP {code}", response=httpx.Response(code, request=request))


async def test_passing_failures_are_tried_again_and_cost_no_other_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Throttled twice, then written; a server that keeps failing one request leaves it
    Pending after three tries; a refusal that will not pass (422) is not tried again.
    Each outcome is its own: the others are acknowledged."""
    tries: dict[str, int] = {}
    script = {"throttled": [429, 429], "broken": [500, 503, 500, 500], "invalid": [422, 422]}

    async def patch(api: Any, namespace: str, name: str, status: Any) -> None:
        tries[name] = tries.get(name, 0) + 1
        codes = script.get(name, [])
        if tries[name] <= len(codes):
            raise _answer(codes[tries[name] - 1])

    monkeypatch.setattr(capacity_requests, "patch_status", patch)
    pending = [_pending(n) for n in ("fine", "throttled", "broken", "invalid")]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await acknowledge(None, pending, asyncio.Semaphore(2), sleep=sleep)  # type: ignore[arg-type]
    assert [t.name for t in result.done] == ["fine", "throttled"]
    assert [t.name for t, _ in result.failed] == ["broken", "invalid"]
    assert tries == {"fine": 1, "throttled": 3, "broken": 3, "invalid": 1}
    assert len(slept) == 4 and all(0 <= s <= 2.0 for s in slept)
