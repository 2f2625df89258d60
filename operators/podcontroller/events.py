"""Events on the Pods the pod controller raised a CapacityRequest for, so `kubectl describe
pod` says what is happening about its capacity without a look at the request.

`WaitingForCapacity` when the request is raised. `NodeComing` when the operator has told
the request a machine that fits it is joining the cluster: the controller watches the
operator's NodeComing Events on CapacityRequests (selected by the API server, so only
those travel) and says the same on the request's Pod, from the machine and rack the
operator's Event carries (`bigfleet.capacity_events`). Events are written through the
shared recorder, so they name the Pod with its uid and repeats aggregate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import kr8s
import kr8s.asyncio

from bigfleet import capacity_events
from bigfleet.crd import API_VERSION, CapacityRequest
from bigfleet.operators.podcontroller.derive import OWNER_LABEL
from bigfleet.recorder import Involved, Recorder
from bigfleet.supervise import backoff, beat

log = logging.getLogger(__name__)

COMPONENT = "bigfleet-pod-controller"
# The operator's NodeComing Events on CapacityRequests, selected by the API server (anyone
# may write Events; only the operator's are relayed).
NODE_COMING_SELECTOR = (
    f"involvedObject.kind={CapacityRequest.kind},reason={capacity_events.NODE_COMING},"
    f"source={capacity_events.OPERATOR}"
)


@dataclass(frozen=True, slots=True)
class Known:
    """A request this process raised: its pod, and whether the pod was told it waits.
    Only a pod that waited is told a machine is coming: one the scheduler placed at
    once has nothing to wait for, and the Event would cost a write per pod."""

    pod: Involved | None
    waited: bool


UNKNOWN = Known(None, waited=False)  # not raised by this process (or it is gone)


def pod(namespace: str, name: str, uid: str) -> Involved:
    return Involved(api_version="v1", kind="Pod", name=name, namespace=namespace, uid=uid)


async def waiting(recorder: Recorder, about: Involved, request: str) -> None:
    """The Pod's CapacityRequest `request` is raised and pending."""
    await recorder.record(
        about, capacity_events.WAITING_FOR_CAPACITY, capacity_events.pod_waiting(request)
    )


def owner_pod(request: Mapping[str, Any]) -> Involved | None:
    """The Pod a request was raised for by this controller; None for any other request."""
    meta = request.get("metadata") or {}
    uid = (meta.get("labels") or {}).get(OWNER_LABEL)
    for owner in meta.get("ownerReferences") or ():
        if owner.get("kind") == "Pod" and owner.get("uid") == uid and uid:
            return pod(meta.get("namespace", ""), owner["name"], uid)
    return None


class NodeComingRelay:
    """Tells a Pod what the operator told its CapacityRequest: a machine is coming."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        recorder: Recorder,
        known: Callable[[str, str], Known] = lambda namespace, request: UNKNOWN,
    ) -> None:
        self.api = api
        self.recorder = recorder
        # What this process knows of a request it raised, without asking the API server;
        # a request raised before a restart is read once.
        self.known = known
        # Where the watch goes on from. Kept across restarts of `run` (a broken stream, an
        # API server restart), so no Event written meanwhile is skipped.
        self.since: str | None = None

    async def run(self) -> None:
        """Watch until cancelled, from where the last run stopped, or from now on the first
        run: Events written before the start were relayed by whoever ran then (or are old
        news)."""
        if self.since is None:
            self.since = await self._now()
        broken = 0  # breaks in a row, for the backoff
        while True:
            beat()
            try:
                await self._watch()
                broken = 0
            except httpx.TransportError as err:
                # A watch is one long connection: an API server restart, a proxy, or the
                # client's own re-login after a token rotation cuts it. Not a failure of
                # ours: go on from `since` once the backoff has passed.
                log.log(
                    logging.WARNING if broken >= 3 else logging.INFO,
                    "watch of NodeComing Events broke; resuming",
                    extra={"error": repr(err), "since": self.since, "in_a_row": broken + 1},
                )
                await asyncio.sleep(backoff(broken, 0.5, 30))
                broken += 1

    async def _watch(self) -> None:
        """One watch from `self.since` until the API server ends it.

        Bookmarks keep the position fresh while no NodeComing happens, so the next watch
        does not start from a version the API server has compacted away; if it has
        (410 Gone), the relay goes on from now.
        """
        params = {
            "watch": "true",
            "fieldSelector": NODE_COMING_SELECTOR,
            "resourceVersion": self.since or "",
            "allowWatchBookmarks": "true",
        }
        async with self.api.call_api(
            "GET", version="v1", url="events", params=params, stream=True, timeout=None
        ) as response:
            async for line in response.aiter_lines():
                beat()
                try:
                    frame = json.loads(line)
                    kind, body = frame.get("type"), frame.get("object") or {}
                    version = str(body["metadata"]["resourceVersion"]) if kind != "ERROR" else ""
                except (ValueError, KeyError, TypeError, AttributeError):
                    log.warning("watch line not understood; skipped", extra={"line": line[:200]})
                    continue
                if kind == "ERROR":
                    if body.get("code") == 410:
                        self.since = await self._now()
                        return
                    raise kr8s.ServerError(f"watch of NodeComing Events: {body.get('message')}")
                if kind == "ADDED":  # a bumped count says nothing new
                    try:
                        await self.relay(body)
                    except Exception:  # one Event that fails stops no other
                        log.exception("NodeComing not relayed to the pod")
                self.since = version

    async def _request(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The request as the API server has it; None when it is gone (one GET: no retry
        loop on a 404)."""
        found = await CapacityRequest.read(name, self.api, namespace)
        return dict(found.raw) if found is not None else None

    async def _now(self) -> str:
        """The resourceVersion of the cluster's Events now."""
        async with self.api.call_api(
            "GET",
            version="v1",
            url="events",
            params={"fieldSelector": NODE_COMING_SELECTOR, "limit": 1},
        ) as response:
            return str(response.json()["metadata"]["resourceVersion"])

    async def relay(self, event: Mapping[str, Any]) -> bool:
        """Say the operator's NodeComing on the request's Pod; False when the Event is not
        about a request this controller raised (or the request is gone)."""
        involved = event.get("involvedObject") or {}
        annotations = (event.get("metadata") or {}).get("annotations") or {}
        machine = annotations.get(capacity_events.MACHINE_ANNOTATION)
        if involved.get("apiVersion") != API_VERSION or not machine:
            return False
        namespace, name = involved.get("namespace", ""), involved.get("name", "")
        known = self.known(namespace, name)
        if known is UNKNOWN:
            request = await self._request(namespace, name)
            about = owner_pod(request) if request is not None else None
        else:
            about = known.pod if known.waited else None
        if about is None:
            return False
        rack = annotations.get(capacity_events.RACK_ANNOTATION, "")
        await self.recorder.record(
            about,
            capacity_events.NODE_COMING,
            capacity_events.node_coming(machine, rack, f"its CapacityRequest {name}"),
        )
        return True
