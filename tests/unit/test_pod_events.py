"""Which Pod a CapacityRequest's Events are relayed to, and the relay's watch."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import kr8s
import pytest

from bigfleet.capacity_events import MACHINE_ANNOTATION
from bigfleet.crd import API_VERSION
from bigfleet.operators.podcontroller.events import (
    UNKNOWN,
    Known,
    NodeComingRelay,
    owner_pod,
    pod,
)


def test_only_requests_the_pod_controller_raised_lead_to_a_pod() -> None:
    raised = {
        "metadata": {
            "name": "cr-pod-web-1234abcd",
            "namespace": "ml",
            "labels": {"bigfleet.lucy.sh/owned-by-pod": "pod-uid"},
            "ownerReferences": [{"kind": "Pod", "name": "web", "uid": "pod-uid"}],
        }
    }
    pod = owner_pod(raised)
    assert pod is not None
    assert (pod.kind, pod.name, pod.namespace, pod.uid) == ("Pod", "web", "ml", "pod-uid")
    by_hand = {"metadata": {"name": "trainer", "namespace": "ml"}}
    assert owner_pod(by_hand) is None
    other_owner = {
        "metadata": {
            "name": "x",
            "namespace": "ml",
            "labels": {"bigfleet.lucy.sh/owned-by-pod": "pod-uid"},
            "ownerReferences": [{"kind": "Pod", "name": "web", "uid": "someone-else"}],
        }
    }
    assert owner_pod(other_owner) is None


# -- the relay's watch, against a scripted API ---------------------------------------------


def _raised(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"bigfleet.lucy.sh/owned-by-pod": f"uid-{name}"},
            "ownerReferences": [{"kind": "Pod", "name": f"pod-{name}", "uid": f"uid-{name}"}],
        }
    }


def _added(version: int, request: str) -> str:
    event = {
        "metadata": {
            "resourceVersion": str(version),
            "annotations": {MACHINE_ANNOTATION: f"m-{version}"},
        },
        "involvedObject": {"apiVersion": API_VERSION, "kind": "CapacityRequest",
                           "namespace": "ml", "name": request},
    }  # fmt: skip
    return json.dumps({"type": "ADDED", "object": event})


class ScriptedApi:
    """Event watches that replay `streams` one per call (a stream may end by raising)."""

    namespace = "default"  # as a kr8s client has: objects made with it read it

    def __init__(self, streams: list[list[str | Exception]]) -> None:
        self.streams = streams
        self.watched_from: list[str] = []
        self.read: list[str] = []  # requests read

    @contextlib.asynccontextmanager
    async def call_api(self, method: str, **kw: Any) -> AsyncIterator[Any]:
        url, params = kw.get("url", ""), kw.get("params") or {}
        if url.startswith("capacityrequests/"):
            self.read.append(url)
            name = url.split("/", 1)[1]
            if name == "gone":
                request = httpx.Request("GET", "https://k8s/" + url)
                raise kr8s.ServerError("gone", response=httpx.Response(404, request=request))
            yield SimpleNamespace(json=lambda: _raised(name))
        elif params.get("watch"):
            self.watched_from.append(params["resourceVersion"])
            lines = self.streams.pop(0)

            async def aiter_lines() -> AsyncIterator[str]:
                for line in lines:
                    if isinstance(line, Exception):
                        raise line
                    yield line

            yield SimpleNamespace(aiter_lines=aiter_lines)
        else:  # the list that says where "now" is
            yield SimpleNamespace(json=lambda: {"metadata": {"resourceVersion": "100"}})


class Told:
    def __init__(self) -> None:
        self.pods: list[str] = []

    async def record(self, about: Any, reason: str, message: str, **kw: Any) -> None:
        if about.name == "pod-broken":
            raise RuntimeError("the API server hung up")
        self.pods.append(about.name)


async def test_the_relay_skips_what_it_cannot_use_and_resumes_where_it_stopped() -> None:
    api = ScriptedApi(
        [
            [
                "not json",
                _added(101, "a"),
                _added(102, "broken"),  # its Event fails: the others still go
                _added(103, "gone"),  # the request was deleted meanwhile
                httpx.ReadError("stream reset"),  # a cut connection: the relay goes on
            ],
            [_added(104, "b")],
        ]
    )
    told = Told()
    relay = NodeComingRelay(api, told)  # type: ignore[arg-type]
    with pytest.raises(IndexError):  # the script has no third watch: that ends the test
        await relay.run()
    assert api.watched_from == ["100", "103", "104"]  # resumed each time, never from "now"
    assert told.pods == ["pod-a", "pod-b"] and relay.since == "104"


async def test_a_watch_refused_by_the_api_server_is_the_supervisor_s_to_restart() -> None:
    refused = json.dumps({"type": "ERROR", "object": {"code": 500, "message": "etcd is down"}})
    relay = NodeComingRelay(ScriptedApi([[refused]]), Told())  # type: ignore[arg-type]
    with pytest.raises(kr8s.ServerError, match="etcd is down"):
        await relay.run()


async def test_a_request_the_controller_raised_itself_is_relayed_without_a_read() -> None:
    """The reconciler knows the pods of the requests it raised, and which of them were
    told they wait: only those hear a machine is coming. A request raised before this
    process started is read from the API server."""
    api = ScriptedApi([[_added(101, "mine"), _added(102, "placed"), _added(103, "older")]])
    told = Told()
    known = {
        ("ml", "mine"): Known(pod("ml", "pod-mine", "uid-mine"), waited=True),
        ("ml", "placed"): Known(pod("ml", "pod-placed", "uid-placed"), waited=False),
    }
    relay = NodeComingRelay(api, told, lambda ns, name: known.get((ns, name), UNKNOWN))  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        await relay.run()
    assert told.pods == ["pod-mine", "pod-older"]
    assert api.read == ["capacityrequests/older"]
