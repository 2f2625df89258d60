"""Leader election on etcd: a transaction on one key with a short lease attached.

The failure this prevents is two coordinators acting as leader. A candidate
creates the election key only if it does not exist, attaching its lease; it
leads while it keeps the lease alive. Its term is the key's create revision:
etcd's revisions only grow, so every new leader has a higher term, and a
write guarded by "the election key still has my create revision" fails once
someone else leads (see `Store`). Losing the lease, or failing to refresh it
within the TTL, ends leadership; nothing here is home-made consensus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

import aetcd

from bigfleet.coordinator.store import ELECTION_KEY, TRANSIENT, EtcdStore, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leadership:
    identity: str
    term: int  # the election key's create revision


class Candidate(Protocol):
    """What a coordinator replica needs from its election, whatever the store."""

    ttl_s: int
    lost: asyncio.Event  # set when leadership ends

    async def campaign(self) -> Leadership: ...
    async def leader(self) -> str | None: ...
    async def resign(self) -> None: ...
    def store_for(self, term: int, prefix: bytes) -> Store: ...


class Election:
    def __init__(
        self, client: aetcd.Client, identity: str, ttl_s: int = 2, key: bytes = ELECTION_KEY
    ) -> None:
        self.client = client
        self.identity = identity
        self.ttl_s = max(1, ttl_s)
        self.key = key
        # A read this often is cheap for etcd and keeps the takeover close to the lease expiry.
        self.poll_s = min(0.1, self.ttl_s / 10)
        self.lost = asyncio.Event()
        self._lease: aetcd.leases.Lease | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def campaign(self) -> Leadership:
        """Wait until this candidate leads; start keeping the lease alive."""
        while True:
            try:
                won = await self._try_once()
            except TRANSIENT as err:  # etcd is electing its own leader: ask again shortly
                log.info("campaign retried", extra={"error": str(err)})
                won = None
            if won is not None:
                return won
            await asyncio.sleep(self.poll_s)

    async def _try_once(self) -> Leadership | None:
        if await self.client.get(self.key) is not None:  # someone leads: no lease churn
            return None
        lease = await self.client.lease(self.ttl_s)
        won = False
        try:
            tx = self.client.transactions
            won, responses = await self.client.transaction(
                compare=[tx.create(self.key) == 0],
                success=[tx.put(self.key, self.identity.encode(), lease), tx.get(self.key)],
                failure=[],
            )
        finally:
            if not won:  # lost, failed or cancelled: give the lease back now
                await self._revoke(lease)
        if not won:
            return None
        # The term comes from the winning transaction itself: a separate read
        # could already see a successor's key.
        (_, held), *_ = responses[1]
        self._lease, self.lost = lease, asyncio.Event()
        self._keeper = asyncio.create_task(self._keep_alive(lease))
        log.info("leading", extra={"identity": self.identity, "term": held.create_revision})
        return Leadership(self.identity, held.create_revision)

    async def _keep_alive(self, lease: aetcd.leases.Lease) -> None:
        try:
            while True:
                await asyncio.sleep(self.ttl_s / 3)
                async with asyncio.timeout(self.ttl_s / 2):
                    response = await lease.refresh()
                if response is None or response.TTL <= 0:  # etcd dropped the lease
                    break
        except (TimeoutError, aetcd.exceptions.ClientError) as err:
            log.warning("leader lease not refreshed", extra={"error": str(err)})
        finally:
            self.lost.set()  # step down: the lease may already be gone
        await self._revoke(lease)  # if it is not, free the key for a successor now

    async def _revoke(self, lease: aetcd.leases.Lease) -> None:
        """Best effort and bounded: an unreachable etcd expires the lease anyway."""
        with contextlib.suppress(aetcd.exceptions.ClientError, TimeoutError):
            async with asyncio.timeout(self.ttl_s):
                await lease.revoke()

    def store_for(self, term: int, prefix: bytes) -> Store:
        """Writes guarded by this election's key holding `term`."""
        return EtcdStore(self.client, term, election_key=self.key, prefix=prefix)

    async def leader(self) -> str | None:
        """Who leads now, as far as etcd says; None when nobody does."""
        held = await self.client.get(self.key)
        return held.value.decode() if held is not None else None

    async def resign(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._lease is not None:
            await self._revoke(self._lease)
        self.lost.set()
