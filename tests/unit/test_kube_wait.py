"""Waiting for Kubernetes at start: what counts as not ready yet, said once, and a stop."""

from __future__ import annotations

import asyncio
import logging
import ssl

import httpx
import kr8s
import pytest

from bigfleet import kube_wait
from bigfleet.kube_wait import not_yet, until_ready


def _server_error(code: int) -> kr8s.ServerError:
    response = httpx.Response(code, request=httpx.Request("GET", "https://k8s/apis/x"))
    return kr8s.ServerError("refused", response=response)


def test_what_counts_as_not_ready_yet() -> None:
    down = not_yet(httpx.ConnectError("All connection attempts failed"), "CapacityRequest")
    assert down == "the Kubernetes API server is not reachable (All connection attempts failed)"
    missing = not_yet(_server_error(404), "CapacityRequest")
    assert missing is not None and missing.startswith("the CapacityRequest CRD is not installed")
    assert "kubectl apply -f crds/" in missing
    assert not_yet(kr8s.NotFoundError("no"), "CapacityRequest") == missing
    forbidden = not_yet(_server_error(403), "CapacityRequest")
    assert forbidden is not None and "RBAC" in forbidden
    assert not_yet(_server_error(503), "CapacityRequest") == "the API server is not ready (503)"
    assert not_yet(_server_error(422), "CapacityRequest") is None  # a real failure
    assert not_yet(ValueError("bad kubeconfig"), "CapacityRequest") is None


async def test_each_reason_is_said_once_and_the_result_comes_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kube_wait, "FIRST_DELAY_S", 0.01)
    failures: list[Exception] = [
        httpx.ConnectError("down"),
        httpx.ConnectError("down"),
        _server_error(404),
        _server_error(404),
    ]

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "api"

    with caplog.at_level(logging.DEBUG, logger="bigfleet.kube_wait"):
        stop = asyncio.Event()
        got = await until_ready(attempt, stop, resource="CapacityRequest", component="op")
    assert got == "api"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "not reachable (down)" in warnings[0] and "CRD is not installed" in warnings[1]
    assert any(r.getMessage() == "op: Kubernetes is ready" for r in caplog.records)


async def test_a_stop_ends_the_wait_and_a_real_failure_goes_up() -> None:
    stop = asyncio.Event()

    async def down() -> None:
        stop.set()  # a SIGTERM while waiting
        raise httpx.ConnectError("down")

    assert await until_ready(down, stop, resource="CapacityRequest", component="op") is None

    async def broken() -> None:
        raise _server_error(422)

    with pytest.raises(kr8s.ServerError):
        await until_ready(broken, asyncio.Event(), resource="CapacityRequest", component="op")


async def test_a_hanging_attempt_is_bounded_and_cut_short_by_a_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kube_wait, "ATTEMPT_TIMEOUT_S", 0.05)
    monkeypatch.setattr(kube_wait, "FIRST_DELAY_S", 0.01)
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # a server that took the connection, never answers
        return "api"

    stop = asyncio.Event()
    got = await until_ready(hangs_once, stop, resource="CapacityRequest", component="op")
    assert got == "api"
    assert any("did not answer within" in r.getMessage() for r in caplog.records)

    monkeypatch.setattr(kube_wait, "ATTEMPT_TIMEOUT_S", 3600.0)

    async def hangs() -> None:
        await asyncio.Event().wait()

    asyncio.get_running_loop().call_later(0.05, stop.set)  # SIGTERM mid-connect
    assert await until_ready(hangs, stop, resource="CapacityRequest", component="op") is None


def test_a_broken_kubeconfig_or_a_wrong_ca_is_not_waited_for() -> None:
    assert not_yet(FileNotFoundError("/etc/ca.crt"), "CapacityRequest") is None
    wrong_ca = httpx.ConnectError("certificate verify failed")
    wrong_ca.__cause__ = ssl.SSLCertVerificationError("CERTIFICATE_VERIFY_FAILED")
    assert not_yet(wrong_ca, "CapacityRequest") is None
