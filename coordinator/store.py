"""Coordinator state in etcd, written only by the current leader.

Every write is a transaction guarded by "the election key's create revision
is still my term": a deposed leader's late write fails instead of landing.
Reads are plain gets under the state prefix.
"""

from __future__ import annotations

import aetcd
import grpc

from bigfleet.errors import BigFleetError
from coordinator.election import ELECTION_KEY

PREFIX = b"/bigfleet/coordinator/state/"


class NotLeader(BigFleetError):
    """This replica no longer leads; the write was not applied."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Store:
    def __init__(self, client: aetcd.Client, term: int, election_key: bytes = ELECTION_KEY) -> None:
        self.client = client
        self.term = term
        self.election_key = election_key

    async def put(self, key: str, value: bytes) -> None:
        tx = self.client.transactions
        applied, _ = await self.client.transaction(
            compare=[tx.create(self.election_key) == self.term],
            success=[tx.put(PREFIX + key.encode(), value)],
            failure=[],
        )
        if not applied:
            raise NotLeader(f"term {self.term} is over; {key} not written")

    async def get(self, key: str) -> bytes | None:
        found = await self.client.get(PREFIX + key.encode())
        return found.value if found is not None else None
