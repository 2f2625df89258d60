"""kopf as both processes run it: cluster-wide, logged in from the kubeconfig, posting no
Events of its own, and stopped by a flag rather than by cancellation (which would skip
its graceful shutdown)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import kopf


def new_registry() -> kopf.OperatorRegistry:
    """A handler registry that already knows how to log in."""
    handlers = kopf.OperatorRegistry()

    @kopf.on.login(registry=handlers)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    return handlers


async def run(registry: kopf.OperatorRegistry, kubeconfig: Path, stop: asyncio.Event) -> None:
    """Watch with `registry`'s handlers until `stop` is set."""
    os.environ["KUBECONFIG"] = str(kubeconfig)  # kopf's login reads it
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    await kopf.operator(
        registry=registry, settings=settings, clusterwide=True, standalone=True, stop_flag=stop
    )
