"""The partition proxy forwards, holds traffic while cut (old and new connections),
and delivers what it held once healed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bigfleet.controlplane.proxy import LoopbackProxy

QUIET_S = 0.5  # long enough for a forwarded echo on loopback to come back many times over


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[LoopbackProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    forwarder = LoopbackProxy(f"127.0.0.1:{port}")
    forwarder.start()
    yield forwarder
    forwarder.stop()
    server.close()


async def _dial(proxy: LoopbackProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = proxy.address.split(":")
    return await asyncio.open_connection(host, int(port))


async def _say(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter], text: bytes) -> None:
    pair[1].write(text)
    await pair[1].drain()


async def test_forwards_both_ways(proxy: LoopbackProxy) -> None:
    pair = await _dial(proxy)
    await _say(pair, b"hello")
    assert await asyncio.wait_for(pair[0].readexactly(5), 5) == b"hello"
    pair[1].close()


async def test_a_cut_holds_old_and_new_connections_until_healed(proxy: LoopbackProxy) -> None:
    old = await _dial(proxy)
    await _say(old, b"one")
    assert await asyncio.wait_for(old[0].readexactly(3), 5) == b"one"
    proxy.cut()
    await asyncio.sleep(0.05)  # the cut is applied on the proxy's own loop
    assert proxy.cut_now
    await _say(old, b"two")
    new = await _dial(proxy)  # accepted, as a SYN would be, then silence
    await _say(new, b"three")
    for reader, size in ((old[0], 3), (new[0], 5)):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(size), QUIET_S)
    proxy.heal()
    assert await asyncio.wait_for(old[0].readexactly(3), 5) == b"two"
    assert await asyncio.wait_for(new[0].readexactly(5), 5) == b"three"
    assert proxy.connections == 2
    for pair in (old, new):
        pair[1].close()


async def test_a_closed_target_closes_the_client() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    proxy = LoopbackProxy(f"127.0.0.1:{port}")
    proxy.start()
    try:
        reader, writer = await _dial(proxy)
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        writer.close()
    finally:
        proxy.stop()
