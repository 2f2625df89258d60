"""Acknowledging requests: one patch per request even while roll-ups outpace the writes."""

from __future__ import annotations

import asyncio
from typing import Any

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
    assert [t.name for t in first] == ["a", "b"]  # the deleted one needs no acknowledgement
    assert later == [[], []]
    assert in_flight == set()  # nothing stays claimed: a failed write is tried again later

    again = await acknowledge(None, pending[:1], limit, in_flight)  # type: ignore[arg-type]
    assert [t.name for t in again] == ["a"] and server.patched.count("a") == 2


async def test_a_failed_write_releases_its_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(api: Any, namespace: str, name: str, status: Any) -> None:
        raise kr8s.ServerError("etcd is down")

    monkeypatch.setattr(capacity_requests, "patch_status", refused)
    in_flight: set[tuple[str, str]] = set()
    with pytest.raises(kr8s.ServerError):
        await acknowledge(None, [_pending("a")], asyncio.Semaphore(1), in_flight)  # type: ignore[arg-type]
    assert in_flight == set()
