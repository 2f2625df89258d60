"""The provider RPCs' request messages as a shard sends them, every mutation fenced.

One builder for the shard's gRPC client and the fake's in-process adapter, so
both send the same messages with the same token discipline: (shard id, epoch,
a sequence that only grows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bigfleet.fencing import SequenceCounter
from bigfleet.wire import provider_pb2 as pb


@dataclass
class FencedRequests:
    shard_id: str
    epoch: int
    sequence: SequenceCounter = field(default_factory=SequenceCounter)

    def create(self, machine_id: str) -> pb.CreateRequest:
        request = pb.CreateRequest(machine_id=machine_id)
        self._fence(request)
        return request

    def configure(
        self, machine_id: str, cluster: str, blob: bytes, metadata: dict[str, str]
    ) -> pb.ConfigureRequest:
        request = pb.ConfigureRequest(
            machine_id=machine_id, cluster_id=cluster, bootstrap_blob=blob, shard_metadata=metadata
        )
        self._fence(request)
        return request

    def drain(self, machine_id: str, grace_seconds: int) -> pb.DrainRequest:
        request = pb.DrainRequest(machine_id=machine_id, grace_period_seconds=grace_seconds)
        self._fence(request)
        return request

    def delete(self, machine_id: str) -> pb.DeleteRequest:
        request = pb.DeleteRequest(machine_id=machine_id)
        self._fence(request)
        return request

    def _fence(
        self, request: pb.CreateRequest | pb.ConfigureRequest | pb.DrainRequest | pb.DeleteRequest
    ) -> None:
        """Stamp the token: a fresh sequence for every attempt."""
        request.shard_id = self.shard_id
        request.shard_epoch = self.epoch
        request.sequence_number = self.sequence.next()
