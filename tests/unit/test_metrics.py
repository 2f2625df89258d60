"""Each binary serves /metrics on one address; "0" turns the listener off."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from bigfleet import metrics


@pytest.mark.parametrize(
    ("address", "parsed"),
    [(":8780", ("0.0.0.0", 8780)), ("127.0.0.1:9000", ("127.0.0.1", 9000)), ("0", None)],
)
def test_metrics_addresses_parse(address: str, parsed: tuple[str, int] | None) -> None:
    assert metrics.parse_address(address) == parsed


@pytest.mark.parametrize("address", ["8780", "host:", ":99999", ":http"])
def test_bad_metrics_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="metrics address"):
        metrics.parse_address(address)


def test_serve_exposes_the_registry() -> None:
    registry = CollectorRegistry()
    Counter("bigfleet_test_events", "events seen in a test", registry=registry).inc(3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = metrics.serve(f"127.0.0.1:{port}", registry)
    assert server is not None
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        server.shutdown()
    assert b"bigfleet_test_events_total 3.0" in body


def test_serve_with_zero_starts_nothing() -> None:
    assert metrics.serve("0") is None
