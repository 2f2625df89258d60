"""A loopback TCP proxy that can be cut and healed, for partition tests.

A cut behaves like a network partition, not like a refused connection: bytes
stop flowing both ways on every connection, old and new (new connections are
still accepted, as a SYN would be, and then hear nothing), so a client learns
of it only through its own deadlines and keepalives. Nothing is read while
cut, so the kernel's buffers push back and the proxy holds no data of its own.
Healing lets the held bytes flow again, as retransmissions would.

The proxy runs its own event loop in a daemon thread, so callers on any thread
(or in any event loop) can cut and heal it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from bigfleet.controlplane.process import free_port

_CHUNK = 64 * 1024
_START_S = 10.0


class LoopbackProxy:
    """Listens on 127.0.0.1:`port` (free by default) and forwards to `target`
    (`host:port`)."""

    def __init__(self, target: str, port: int | None = None) -> None:
        host, _, target_port = target.rpartition(":")
        self.target = (host, int(target_port))
        self.address = f"127.0.0.1:{port or free_port()}"
        self.connections = 0  # accepted since start
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._open = asyncio.Event()  # set while traffic flows
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    @property
    def cut_now(self) -> bool:
        return not self._open.is_set()

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_START_S)

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(_START_S)

    async def _start(self) -> None:
        self._open.set()
        host, port = self.address.split(":")
        self._server = await asyncio.start_server(self._accepted, host, int(port))

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accepted(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._forward(client_r, client_w)
        except OSError:
            pass  # the target refused: the client sees its connection close
        finally:
            self._handlers.discard(handler)

    async def _forward(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            await self._open.wait()  # a connection made during a cut waits, unanswered
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except BaseException:  # the target is down, or the proxy stops
            client_w.close()
            raise
        pumps = [
            asyncio.ensure_future(self._pump(client_r, upstream_w)),
            asyncio.ensure_future(self._pump(upstream_r, client_w)),
        ]
        try:
            # Either side closing ends both: a half-open pair would hang the client.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, upstream_w):
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self._open.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self._open.wait()  # read just before a cut: held, not delivered
                writer.write(data)
                await writer.drain()
