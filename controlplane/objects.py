"""Reading objects as the API server returns them, for the tools that drive a chain."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def raw(obj: object) -> dict[str, Any]:
    """kr8s yields objects, or plain dicts for kinds it has no class for."""
    found: dict[str, Any] = obj if isinstance(obj, dict) else obj.raw  # type: ignore[attr-defined]
    return found


def api_time(stamp: str) -> float:
    """An API server timestamp (whole seconds, UTC) as a Unix time."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def scheduled_at(pod: Mapping[str, Any]) -> float | None:
    """When the Pod's PodScheduled condition turned True; None while it has not."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "True":
            return api_time(condition["lastTransitionTime"])
    return None
