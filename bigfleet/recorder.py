"""Kubernetes Events, written the way client-go's recorder writes them, for every component
that explains itself on the objects it touches.

An Event names its object in full (apiVersion, kind, name, namespace and uid):
`kubectl describe` lists only the Events whose `involvedObject.uid` is the object's,
so an Event without the uid explains nothing to anyone reading the object. When the
caller does not know the uid, the recorder asks `uid_of` (a watch's cache) and
otherwise reads the object once for that Event.

The same thing said again about the same object (same type, reason and message) within
`window_s` of the last time is not a new object: the Event already written gets its
`count` and `lastTimestamp` bumped by a merge patch, as client-go's correlator does, so
`kubectl describe` shows one line `(x5 over 3m)` instead of five. Which Events were
written is remembered for the `capacity` most recent keys only (client-go keeps 4,096):
a key pushed out, or an Event the API server has since expired (its TTL is an hour by
default), is written anew.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Event, Node, Pod

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.crd import CapacityRequest, UpcomingNode
from bigfleet.timestamps import rfc3339

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
# The kinds BigFleet writes Events about, by (apiVersion, kind): their resource names
# without API discovery, which walks every group and fails whenever any one is down.
_PLURALS = {(k.version, k.kind): k.endpoint for k in (Node, Pod, CapacityRequest, UpcomingNode)}
WINDOW_S = 600.0  # client-go aggregates within ten minutes
CAPACITY = 4096  # client-go's LRU of recent Events


@dataclass(frozen=True, slots=True, kw_only=True)
class Involved:
    """The object an Event is about. An empty `namespace` is a cluster-scoped object; an
    empty `uid` is one the caller does not know (the recorder finds it)."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""

    def reference(self) -> dict[str, str]:
        """`involvedObject` as the API server stores it."""
        ref = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            ref["namespace"] = self.namespace
        if self.uid:
            ref["uid"] = self.uid
        return ref


Key = tuple[Involved, EventType, str, str]  # the object (with its uid), type, reason, message


@dataclass(slots=True)
class Written:
    """One Event object already in the cluster, and how often it has been said."""

    namespace: str
    name: str
    count: int
    last: float  # monotonic seconds of the last write


class RecentEvents:
    """The keys of recently written Events, least recently used first, at most `capacity`.

    Pure bookkeeping: `repeat` says whether a key is a repeat to aggregate (and counts it),
    `wrote` remembers a new Event, `forget` drops one the API server no longer has.
    """

    def __init__(self, *, capacity: int = CAPACITY, window_s: float = WINDOW_S) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.window_s = window_s
        self._written: OrderedDict[Key, Written] = OrderedDict()

    def __len__(self) -> int:
        return len(self._written)

    def repeat(self, key: Key, now: float) -> Written | None:
        """The Event to bump when `key` was written within the window, as it will read once
        bumped (count one higher, `last` now); None when a new Event is due. Nothing is
        kept until `bumped` says the API server took it."""
        written = self._written.get(key)
        if written is None:
            return None
        if now - written.last > self.window_s:
            del self._written[key]  # too old to aggregate into
            return None
        self._written.move_to_end(key)
        return dataclasses.replace(written, count=written.count + 1, last=now)

    def bumped(self, key: Key, written: Written) -> None:
        """The API server took the bump `repeat` proposed."""
        if key in self._written:
            self._written[key] = written

    def wrote(self, key: Key, namespace: str, name: str, now: float) -> None:
        self._written[key] = Written(namespace=namespace, name=name, count=1, last=now)
        self._written.move_to_end(key)
        while len(self._written) > self.capacity:
            self._written.popitem(last=False)

    def forget(self, key: Key) -> None:
        self._written.pop(key, None)


class Recorder:
    """Writes Events as `component`, one key at a time, aggregating repeats."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        component: str,
        *,
        uid_of: Callable[[Involved], str | None] | None = None,
        clock: Clock = REAL_CLOCK,
        window_s: float = WINDOW_S,
        capacity: int = CAPACITY,
    ) -> None:
        self.api = api
        self.component = component
        self._uid_of = uid_of
        self.clock = clock
        self.recent = RecentEvents(capacity=capacity, window_s=window_s)
        # One write per key at a time, so two repeats racing never create two Events.
        self._locks: dict[Key, tuple[asyncio.Lock, int]] = {}

    async def record(
        self,
        about: Involved,
        reason: str,
        message: str,
        type_: EventType = "Normal",
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Write the Event, or bump the one already written for the same key.

        `annotations` (facts a reader may act on, said by the message too) go on a new
        Event; they are not part of the key. An object that no longer exists gets no Event.
        Raises kr8s.ServerError when the API server refuses the write.
        """
        if not about.uid:
            uid = await self._find_uid(about)
            if uid is None:
                log.debug("event dropped: its object is gone", extra={"object": about.name})
                return
            about = dataclasses.replace(about, uid=uid)
        key: Key = (about, type_, reason, message)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                await self._write(key, about, reason, message, type_, annotations or {})
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _write(
        self,
        key: Key,
        about: Involved,
        reason: str,
        message: str,
        type_: EventType,
        annotations: Mapping[str, str],
    ) -> None:
        now = rfc3339()
        repeat = self.recent.repeat(key, self.clock.monotonic())
        if repeat is not None:
            event = Event(
                {"metadata": {"name": repeat.name, "namespace": repeat.namespace}}, api=self.api
            )
            try:
                await event.patch({"count": repeat.count, "lastTimestamp": now})
            except kr8s.NotFoundError:
                self.recent.forget(key)  # expired by the API server: say it anew
            else:
                self.recent.bumped(key, repeat)
                return
        namespace = about.namespace or "default"  # where client-go puts cluster-scoped ones
        metadata: dict[str, Any] = {"generateName": f"{about.name}.", "namespace": namespace}
        if annotations:
            metadata["annotations"] = dict(annotations)
        event = Event(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": metadata,
                "involvedObject": about.reference(),
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": self.component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
            api=self.api,
        )
        await event.create()
        self.recent.wrote(key, namespace, event.name, self.clock.monotonic())

    async def _find_uid(self, about: Involved) -> str | None:
        if self._uid_of is not None and (uid := self._uid_of(about)):
            return uid
        # Read every time rather than kept: a Node deleted and joined again under its
        # name has a new uid, and an Event under the old one would not be shown.
        return await self._read(about)

    async def _read(self, about: Involved) -> str | None:
        """The object's uid as the API server has it; None when it does not exist."""
        version = about.api_version
        plural = _PLURALS.get((version, about.kind))
        if plural is None:  # discovery walks every API group: only for kinds not listed
            kind = f"{about.kind}.{version}" if "/" in version else f"{about.kind}/{version}"
            _, plural, _ = await self.api.async_lookup_kind(kind)
        try:
            async with self.api.call_api(
                "GET",
                version=version,
                namespace=about.namespace or None,
                url=f"{plural}/{about.name}",
            ) as response:
                body: dict[str, Any] = response.json()
        except kr8s.ServerError as err:
            if err.response is not None and err.response.status_code == 404:
                return None
            raise
        uid = (body.get("metadata") or {}).get("uid")
        return str(uid) if uid else None
