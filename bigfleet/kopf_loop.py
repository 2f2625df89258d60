"""kopf as both processes run it: cluster-wide, logged in as kubectl would, posting no
Events of its own, and stopped by a flag rather than by cancellation (which would skip
its graceful shutdown)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any

import kopf


def new_registry() -> kopf.OperatorRegistry:
    """A handler registry that already knows how to log in."""
    handlers = kopf.OperatorRegistry()

    @kopf.on.login(registry=handlers)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kubectl's order: $KUBECONFIG (several files allowed), ~/.kube/config, then the
        # pod's service account. kopf logs in again on a 401, reading the token file
        # anew, so a rotated projected token is picked up.
        return kopf.login_with_kubeconfig(**kwargs) or service_account_login(**kwargs)

    return handlers


def service_account_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's service-account login, reaching the API server where client-go's in-cluster
    config does: at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT. kopf alone dials
    kubernetes.default.svc, which needs cluster DNS (a hostNetwork pod may lack it)."""
    info = kopf.login_with_service_account(**kwargs)
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if info is None or not host or not port:
        return info
    return dataclasses.replace(info, server=f"https://{_bracketed(host)}:{port}")


def _bracketed(host: str) -> str:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return host
    return f"[{host}]"


async def run(
    registry: kopf.OperatorRegistry,
    kubeconfig: Path | str | None,
    stop: asyncio.Event,
    *,
    ended: asyncio.Event | None = None,
    server_timeout_s: float | None = None,
) -> None:
    """Watch with `registry`'s handlers until `stop` is set.

    kopf takes SIGINT and SIGTERM for itself once it runs (its handlers replace the
    process's), so a signal ends kopf and not the caller's loops: `ended` is set when kopf
    returns, for whatever reason, so the process's own stop follows it.
    """
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf's login reads it
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.watching.server_timeout = server_timeout_s
    try:
        await kopf.operator(
            registry=registry, settings=settings, clusterwide=True, standalone=True, stop_flag=stop
        )
    finally:
        if ended is not None:
            ended.set()
