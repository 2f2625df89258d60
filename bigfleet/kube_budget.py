"""A budget of API calls in flight, so a controller reuses its connections.

kr8s talks to the API server through one httpx client, which keeps 20 connections
alive between requests. A controller that sends more at once (acknowledgements,
Events and UpcomingNode writes together, in a burst of new requests) opens more,
closes the extra ones once they are done, and opens them again for the next burst:
each time a TLS handshake, on its side and on the API server's. A profile of the
operator during a scale-test ramp spent a seventh of its time in handshakes. With
at most as many calls in flight as there are kept connections, every call after the
first few reuses one; the rest wait their turn, which costs less than a handshake.

Watches are not counted: a watch holds its connection for as long as it lasts.
A slot is held only while a request is on the wire, never while the caller reads
the answer, so calls made from inside another call's block cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kr8s.asyncio

KEPT_ALIVE = 20  # httpx's default max_keepalive_connections, which kr8s does not change
_BUDGETED = "_bigfleet_call_budget"


def budgeted(api: kr8s.asyncio.Api, at_once: int = KEPT_ALIVE) -> kr8s.asyncio.Api:
    """`api` with at most `at_once` requests in flight; applied once per client (kr8s
    hands out one client per configuration, so a second call returns it as it is)."""
    if at_once < 1:
        raise ValueError(f"at_once must be at least 1, not {at_once}")
    if getattr(api, _BUDGETED, None) is not None:
        return api
    calls = asyncio.Semaphore(at_once)
    call_api = api.call_api

    @contextlib.asynccontextmanager
    async def call(method: str = "GET", *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if kwargs.get("stream"):  # a watch: held open, not a call to wait for
            async with call_api(method, *args, **kwargs) as response:
                yield response
            return
        # The slot is held while the request is sent and its body read (httpx reads a
        # non-streamed body whole, then the connection goes back to the pool), and freed
        # before the caller's block runs: a block that makes calls of its own, as one
        # iterating a list does, never waits on a slot it holds itself.
        await calls.acquire()
        held = True
        try:
            async with call_api(method, *args, **kwargs) as response:
                calls.release()
                held = False
                yield response
        finally:
            if held:
                calls.release()

    api.call_api = call  # type: ignore[method-assign]
    setattr(api, _BUDGETED, calls)
    return api
