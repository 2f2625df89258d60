"""The /metrics endpoint every long-running binary serves (one port each).

Metric objects live in each component's own metrics module; this only serves
the registry.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server


def doubling_buckets(start: float, count: int) -> list[float]:
    """Histogram bounds start, 2*start, 4*start... (the catalog's "1 ms x2 (14)" style)."""
    return [start * 2**i for i in range(count)]


def fine_buckets(start: float, doublings: int, steps: int = 4) -> list[float]:
    """Bounds growing by 2**(1/steps): about 19 % apart with 4 steps, fine enough to
    tell a 20 % change, where doubling buckets cannot."""
    return [start * 2 ** (i / steps) for i in range(doublings * steps + 1)]


def parse_address(address: str) -> tuple[str, int] | None:
    """ "HOST:PORT" or ":PORT" (all interfaces) to (host, port); "0" disables the listener."""
    if address == "0":
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics address {address!r} is not HOST:PORT, :PORT or 0")
    return host or "0.0.0.0", int(port)


def serve(address: str, registry: CollectorRegistry = REGISTRY) -> WSGIServer | None:
    """Serve `registry` on `address` in a background thread; None when disabled by "0"."""
    parsed = parse_address(address)
    if parsed is None:
        return None
    host, port = parsed
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
