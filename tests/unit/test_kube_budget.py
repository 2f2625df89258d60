"""The budget of API calls in flight: bounded, watches apart, no deadlock from nesting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bigfleet.kube_budget import budgeted


class Api:
    """call_api as kr8s has it: the request is sent on entry, the block reads the answer."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0

    @contextlib.asynccontextmanager
    async def call_api(self, method: str = "GET", **kwargs: Any) -> AsyncIterator[str]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # on the wire
            if kwargs.get("url") == "refused":
                raise RuntimeError("the API server said no")
        finally:
            self.in_flight -= 1
        yield f"{method} {kwargs.get('url', '')}"


async def test_at_most_the_budget_is_in_flight_and_every_call_is_answered() -> None:
    api = Api()
    budgeted(api, at_once=4)  # type: ignore[arg-type]

    async def one(i: int) -> str:
        async with api.call_api("GET", url=f"x/{i}") as answer:
            return str(answer)

    answers = await asyncio.gather(*(one(i) for i in range(50)))
    assert answers == [f"GET x/{i}" for i in range(50)]
    assert api.most == 4


async def test_watches_are_not_counted() -> None:
    api = Api()
    budgeted(api, at_once=1)  # type: ignore[arg-type]
    watching = asyncio.Event()
    done = asyncio.Event()

    async def watch() -> None:
        async with api.call_api("GET", url="w", stream=True):
            watching.set()
            await done.wait()  # a watch stays open

    task = asyncio.create_task(watch())
    await watching.wait()
    async with api.call_api("GET", url="x") as answer:  # the one slot is still free
        assert answer == "GET x"
    done.set()
    await task


async def test_a_call_made_inside_another_calls_block_does_not_wait_on_it() -> None:
    api = Api()
    budgeted(api, at_once=1)  # type: ignore[arg-type]
    # As a reader of a list does: one call from inside another's block.
    async with (
        asyncio.timeout(1),
        api.call_api("GET", url="list") as listed,
        api.call_api("DELETE", url="item") as deleted,
    ):
        assert (listed, deleted) == ("GET list", "DELETE item")


async def test_a_refused_call_gives_its_slot_back() -> None:
    api = Api()
    budgeted(api, at_once=1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        async with api.call_api("GET", url="refused"):
            pass
    async with asyncio.timeout(1), api.call_api("GET", url="x") as answer:
        assert answer == "GET x"


def test_a_client_is_budgeted_once_and_a_budget_is_at_least_one() -> None:
    api = Api()
    budgeted(api)  # type: ignore[arg-type]
    wrapped = api.call_api
    budgeted(api)  # type: ignore[arg-type]
    assert api.call_api is wrapped
    with pytest.raises(ValueError, match="at_once"):
        budgeted(Api(), at_once=0)  # type: ignore[arg-type]
