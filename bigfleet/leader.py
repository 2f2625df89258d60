"""Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's does it.

Replicas of a controller share one Lease. The holder renews it every `retry_s`; a
candidate takes it over once the record it last saw has not changed for
`lease_s` (judged by its own clock from when it saw that record, so clocks across
nodes need not agree), or at once when the holder released it on a clean stop. A
holder that cannot renew for `renew_deadline_s` stops leading: it must not act on a
lease another replica may already hold. Writes carry the resourceVersion they read,
so two candidates never both win.

The pure part (`Record`, `expired`) is separate from the loop around the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kr8s
import kr8s.asyncio

from bigfleet.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

VERSION = "coordination.k8s.io/v1"


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True, slots=True)
class LeaderElection:
    """Which Lease the replicas of one controller share, and who this replica is."""

    namespace: str
    name: str
    identity: str


def default_namespace() -> str:
    """The pod's namespace (POD_NAMESPACE, else its service account's), else `default`."""
    if namespace := os.environ.get("POD_NAMESPACE"):
        return namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def default_identity() -> str:
    """The pod's name (POD_NAME, else the host name) with a random suffix: a restarted
    process is a new candidate, never mistaken for the holder it replaced."""
    name = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{name}_{secrets.token_hex(4)}"


class LeadershipLost(Exception):
    """The lease could not be renewed in time: another replica may lead now."""


def _micro_time(at: float) -> str:
    """A Lease's MicroTime: RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Record:
    """What a Lease says about its holder (what changes when anyone renews or takes it)."""

    holder: str
    renewed: str  # renewTime as written
    duration_s: int
    transitions: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            renewed=str(spec.get("renewTime") or ""),
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


def expired(record: Record, seen_at: float, now: float) -> bool:
    """Whether a candidate may take the lease: nobody holds it, or the record it saw at
    `seen_at` (its own monotonic clock) has stayed the same past its duration."""
    return not record.holder or now - seen_at > record.duration_s


class LeaseLock:
    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_s: int = 15,
        renew_deadline_s: float = 10.0,
        retry_s: float = 2.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if not renew_deadline_s < lease_s or not retry_s < renew_deadline_s:
            raise ValueError("leader election needs retry < renew deadline < lease duration")
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_s = lease_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_s = retry_s
        self.clock = clock
        self.leading = False
        self._seen: tuple[Record, float] | None = None  # the last record and when it changed
        self._mine: Record | None = None  # the record this replica last wrote
        self._version = ""  # resourceVersion of the lease as last read or written
        self._renewed_at = 0.0
        self.lost: LeadershipLost | None = None  # set by `keep` when renewals failed

    # -- the API ----------------------------------------------------------------------------

    async def _call(self, method: str, url: str = "", body: dict[str, Any] | None = None) -> Any:
        async with self.api.call_api(
            method, version=VERSION, namespace=self.namespace, url=f"leases{url}", json=body
        ) as response:
            return response.json()

    def _lease(self, record: Record, acquired: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_s,
            "renewTime": record.renewed,
            "leaseTransitions": record.transitions,
        }
        if acquired:
            spec["acquireTime"] = acquired
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self._version:
            metadata["resourceVersion"] = self._version
        return {"apiVersion": VERSION, "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _try(self) -> bool:
        """One attempt to take or renew the lease; True when this replica holds it now."""
        now_wall, now = self.clock.time(), self.clock.monotonic()
        try:
            lease = await self._call("GET", f"/{self.name}")
        except kr8s.ServerError as err:
            if err.response is None or err.response.status_code != 404:
                raise
            mine = Record(self.identity, _micro_time(now_wall), self.lease_s, 0)
            self._version = ""
            created = await self._call("POST", body=self._lease(mine, _micro_time(now_wall)))
            self._version = str(created["metadata"]["resourceVersion"])
            self._mine = mine
            return True
        self._version = str(lease["metadata"]["resourceVersion"])
        record = Record.of(lease)
        if self._seen is None or self._seen[0] != record:
            self._seen = (record, now)
        if record.holder != self.identity and not expired(record, self._seen[1], now):
            return False
        taking_over = record.holder != self.identity
        mine = Record(
            self.identity,
            _micro_time(now_wall),
            self.lease_s,
            record.transitions + (1 if taking_over else 0),
        )
        before = (lease.get("spec") or {}).get("acquireTime")
        acquired = _micro_time(now_wall) if taking_over else before
        written = await self._call("PUT", f"/{self.name}", self._lease(mine, acquired))
        self._version = str(written["metadata"]["resourceVersion"])
        self._mine = mine
        return True

    async def _attempt(self) -> bool:
        """`_try`, with a conflict (someone else wrote first) or an API error as a miss."""
        try:
            return await self._try()
        except kr8s.ServerError as err:
            code = err.response.status_code if err.response is not None else None
            if code != 409:
                log.warning(
                    "lease not read or written",
                    extra={"lease": self.name, "error": str(err), "status": code},
                )
            return False
        except (OSError, kr8s.APITimeoutError) as err:
            log.warning("lease not read or written", extra={"lease": self.name, "error": str(err)})
            return False

    # -- the loop ---------------------------------------------------------------------------

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica leads (True), or until `stop` (False)."""
        said = False
        while not stop.is_set():
            if await self._attempt():
                self.leading, self._renewed_at = True, self.clock.monotonic()
                log.info("leading", extra={"lease": self.name, "identity": self.identity})
                return True
            if not said and self._seen is not None:
                log.info(
                    "standing by: another replica leads",
                    extra={"lease": self.name, "leader": self._seen[0].holder},
                )
                said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_s * random.uniform(0.8, 1.2))
        return False

    async def hold(self) -> None:
        """Renew until cancelled; raises LeadershipLost when renewals fail past the
        deadline (or another replica took the lease)."""
        while True:
            await self.clock.sleep(self.retry_s)
            if await self._attempt():
                self._renewed_at = self.clock.monotonic()
            elif self.clock.monotonic() - self._renewed_at > self.renew_deadline_s:
                self.leading = False
                raise LeadershipLost(
                    f"lease {self.namespace}/{self.name} not renewed for "
                    f"{self.renew_deadline_s:g} s; another replica may lead"
                )

    async def keep(self, stop: asyncio.Event) -> None:
        """`hold` beside the work: when the lease is lost, say so, keep the reason in
        `lost` (the caller raises it once its work has stopped) and set `stop`."""
        try:
            await self.hold()
        except LeadershipLost as err:
            log.error("leadership lost; stopping", extra={"lease": self.name, "error": str(err)})
            self.lost = err
            stop.set()

    async def release(self) -> None:
        """Hand the lease over at once (a clean stop): a standby need not wait it out."""
        if not self.leading:
            return
        self.leading = False
        transitions = self._mine.transitions if self._mine is not None else 0
        released = Record("", _micro_time(self.clock.time()), 1, transitions)
        try:
            await self._call("PUT", f"/{self.name}", self._lease(released, None))
        except (kr8s.ServerError, OSError, kr8s.APITimeoutError) as err:
            log.warning("lease not released", extra={"lease": self.name, "error": str(err)})
