"""Coordinator state in etcd, written only by the current leader.

Every write is a transaction guarded by "the election key's create revision
is still my term": a deposed leader's late write fails instead of landing.
Reads are plain gets under the state prefix; any replica may serve them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import aetcd
import grpc
import tenacity

from bigfleet.errors import BigFleetError

PREFIX = b"/bigfleet/coordinator/state/"
ELECTION_KEY = b"/bigfleet/coordinator/leader"
# What etcd answers while it elects its own leader or loses a member: worth another try.
TRANSIENT = (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError)

# An etcd leader change drops requests for a moment. Every call here is safe to
# repeat (reads, and term-guarded transactions that write the same values), so
# a short retry hides the blip instead of failing the caller's RPC.
retry_transient = tenacity.retry(
    retry=tenacity.retry_if_exception_type(TRANSIENT),
    wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
    stop=tenacity.stop_after_delay(3),
    reraise=True,
)


class NotLeader(BigFleetError):
    """This replica does not lead (or no longer does); the write was not applied."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class StoreUnavailable(BigFleetError):
    """etcd did not answer; nothing is known about the call's effect."""

    code = grpc.StatusCode.UNAVAILABLE


class StateReader(Protocol):
    """Reads of the replicated tables; any replica may serve them."""

    prefix: bytes

    async def get(self, key: str) -> bytes | None: ...

    async def scan(self, under: str) -> dict[str, bytes]:
        """Every key below `under` (named without the state prefix) and its value."""
        ...


class Store(StateReader, Protocol):
    """The leader's writes: all of a commit or none, and none once `term` is over."""

    term: int

    async def put(self, key: str, value: bytes) -> None: ...

    async def commit(self, puts: dict[str, bytes], deletes: Iterable[str] = ()) -> None: ...


class EtcdStateReader:
    def __init__(self, client: aetcd.Client, prefix: bytes = PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    @retry_transient
    async def get(self, key: str) -> bytes | None:
        found = await self.client.get(self.prefix + key.encode())
        return found.value if found is not None else None

    @retry_transient
    async def scan(self, under: str) -> dict[str, bytes]:
        found = await self.client.get_prefix(self.prefix + under.encode())
        return {kv.key[len(self.prefix) :].decode(): kv.value for kv in found}


class EtcdStore(EtcdStateReader):
    def __init__(
        self,
        client: aetcd.Client,
        term: int,
        election_key: bytes = ELECTION_KEY,
        prefix: bytes = PREFIX,
    ) -> None:
        super().__init__(client, prefix)
        self.term = term
        self.election_key = election_key

    async def put(self, key: str, value: bytes) -> None:
        await self.commit({key: value})

    @retry_transient
    async def commit(self, puts: dict[str, bytes], deletes: Iterable[str] = ()) -> None:
        """Apply every put and delete in one transaction, or none once the term is over."""
        tx = self.client.transactions
        ops = [tx.put(self.prefix + k.encode(), v) for k, v in puts.items()]
        ops += [tx.delete(self.prefix + k.encode()) for k in deletes]
        applied, _ = await self.client.transaction(
            compare=[tx.create(self.election_key) == self.term], success=ops, failure=[]
        )
        if not applied:
            raise NotLeader(f"term {self.term} is over; {len(ops)} change(s) not written")
