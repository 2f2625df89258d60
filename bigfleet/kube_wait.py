"""Waiting for Kubernetes at start.

An API server that is not up yet, a CRD not installed yet or RBAC not granted yet
are states a controller waits out, as kubelet-managed pods start in any order: each
is said once, in one line that names what is missing and how to add it, and tried
again with backoff. Each try is bounded, and a stop cuts a try short (a connect to
an address that drops packets would otherwise hold a SIGTERM for minutes). Anything
else, and what no wait fixes (a missing file the kubeconfig names, a server
certificate that does not verify), is a real failure and goes up as before.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import kr8s

from bigfleet.supervise import backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
ATTEMPT_TIMEOUT_S = 30.0  # an API server that takes a connection and never answers
CRD_HINT = "kubectl apply -f crds/ (or install a BigFleet chart, which carries them)"
_NOT_READY = {429: "is throttling", 500: "failed", 502: "is not ready", 503: "is not ready",
              504: "timed out"}  # fmt: skip


def _misconfigured(err: BaseException) -> bool:
    """A file the kubeconfig names is missing or unreadable, or the server's certificate
    does not verify: no wait fixes that."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, FileNotFoundError | PermissionError | ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def not_yet(err: BaseException, resource: str) -> str | None:
    """What is missing, when `err` is a Kubernetes that is not ready yet; else None."""
    if _misconfigured(err):
        return None
    if isinstance(err, TimeoutError):
        return f"the Kubernetes API server did not answer within {ATTEMPT_TIMEOUT_S:.0f} s"
    if isinstance(err, httpx.TransportError | OSError | kr8s.APITimeoutError):
        detail = str(err) or type(err).__name__
        return f"the Kubernetes API server is not reachable ({detail})"
    if isinstance(err, kr8s.NotFoundError):
        return f"the {resource} CRD is not installed: {CRD_HINT}"
    if isinstance(err, kr8s.ServerError) and err.response is not None:
        code = err.response.status_code
        if code == 404:
            return f"the {resource} CRD is not installed: {CRD_HINT}"
        if code in (401, 403):
            return (
                f"the API server refuses this identity ({code}: {err}); grant it the RBAC "
                "rules of the chart's ClusterRole"
            )
        if code in _NOT_READY:
            return f"the API server {_NOT_READY[code]} ({code})"
    return None


async def until_ready(
    attempt: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    *,
    resource: str,
    component: str,
) -> T | None:
    """`attempt()`'s result once Kubernetes lets it succeed; None when `stop` came first.

    Waits double from 1 s to 30 s, jittered. A new reason is logged at WARNING as it
    appears (the same reason again only at DEBUG), and once more at INFO when it clears.
    """
    tries, said = 0, ""
    while True:
        try:
            result = await _unless_stopped(attempt, stop)
        except _Stopped:
            return None
        except Exception as err:
            why = not_yet(err, resource)
            if why is None:
                raise
            if why != said:
                log.warning("%s waits for Kubernetes: %s; trying again", component, why)
                said = why
            else:
                log.debug("%s still waits for Kubernetes: %s", component, why)
        else:
            if said:
                log.info("%s: Kubernetes is ready", component)
            return result
        try:
            await asyncio.wait_for(stop.wait(), backoff(tries, FIRST_DELAY_S, MAX_DELAY_S))
        except TimeoutError:
            tries += 1
            continue
        return None


class _Stopped(Exception):
    """`stop` was set while an attempt was in flight."""


async def _unless_stopped(attempt: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """`attempt()`, bounded by ATTEMPT_TIMEOUT_S (TimeoutError) and cut short by `stop`
    (_Stopped): a SIGTERM must not wait for a connect that hangs."""
    trying = asyncio.ensure_future(attempt())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {trying, stopping}, timeout=ATTEMPT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopping.cancel()
        if not trying.done():
            trying.cancel()
    if trying in done:
        return trying.result()
    await asyncio.gather(trying, return_exceptions=True)  # let the cancelled attempt unwind
    if stopping in done:
        raise _Stopped
    raise TimeoutError
