"""A minimal kopf operator, run in-process against the real API server, sees CapacityRequests."""

from __future__ import annotations

import queue
from typing import Any

import kopf
import kr8s.asyncio
from kopf.testing import KopfRunner

from bigfleet.crd import GROUP, VERSION, CapacityRequest
from bigfleet.crd import models as m


def _probe_registry(
    seen: queue.Queue[tuple[str, str, str, dict[str, Any]]],
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # A registry of our own has none of kopf's default login handlers.

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event(GROUP, VERSION, "capacityrequests", registry=registry)
    def record(event: dict[str, Any], **_: Any) -> None:
        body = event["object"]
        seen.put(
            (
                event["type"] or "LISTED",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                body["spec"],
            )
        )

    return registry


def _settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 10  # so the runner stops quickly
    settings.posting.enabled = False
    return settings


def _next_for(
    seen: queue.Queue[tuple[str, str, str, dict[str, Any]]], namespace: str, name: str
) -> tuple[str, dict[str, Any]]:
    while True:
        event_type, ns, got, spec = seen.get(timeout=60)
        if (ns, got) == (namespace, name):
            return event_type, spec


async def test_kopf_operator_receives_capacity_request_events(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    seen: queue.Queue[tuple[str, str, str, dict[str, Any]]] = queue.Queue()
    spec = m.CapacityRequestSpec(resources={"cpu": "2"}, priority=42, interruption_penalty="7")
    args = ["run", "--standalone", f"--namespace={namespace}", "--verbose"]

    with KopfRunner(
        args, registry=_probe_registry(seen), settings=_settings(), timeout=60
    ) as runner:
        request = CapacityRequest(
            CapacityRequest.manifest("watched", spec, namespace=namespace), api=api
        )
        await request.create()
        event_type, received = _next_for(seen, namespace, "watched")
        assert event_type in {"ADDED", "LISTED"}
        assert m.CapacityRequestSpec.from_object(received) == spec

        await request.patch({"spec": {"priority": 43}})
        event_type, received = _next_for(seen, namespace, "watched")
        assert event_type == "MODIFIED"
        assert received["priority"] == 43

    assert runner.exception is None
    assert runner.exit_code == 0
