"""The six CapacityProvider calls, wire request in and wire answer out, over a FakeFleet.

Both ways into the fake go through here: the gRPC servicer (`server`) and the
in-process provider the simulator uses (`inprocess`). Keeping the mapping from
request fields to fleet calls in one place is what makes the two behave alike.
"""

from __future__ import annotations

from bigfleet.fencing import FencingToken
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.wire import provider_pb2 as pb

Mutation = pb.CreateRequest | pb.ConfigureRequest | pb.DrainRequest | pb.DeleteRequest


def token(request: Mutation) -> FencingToken:
    """The fencing token a mutation carries."""
    return FencingToken(
        shard_id=request.shard_id, epoch=request.shard_epoch, sequence=request.sequence_number
    )


def create(fleet: FakeFleet, request: pb.CreateRequest) -> pb.TransitionAck:
    return fleet.create(request.machine_id, token(request))


def configure(fleet: FakeFleet, request: pb.ConfigureRequest) -> pb.TransitionAck:
    return fleet.configure(
        request.machine_id,
        request.cluster_id,
        request.bootstrap_blob,
        dict(request.shard_metadata),
        token(request),
    )


def drain(fleet: FakeFleet, request: pb.DrainRequest) -> pb.TransitionAck:
    return fleet.drain(request.machine_id, request.grace_period_seconds, token(request))


def delete(fleet: FakeFleet, request: pb.DeleteRequest) -> pb.TransitionAck:
    return fleet.delete(request.machine_id, token(request))


def get(fleet: FakeFleet, request: pb.MachineRef) -> pb.Machine:
    return fleet.get(request.id)


def list_machines(fleet: FakeFleet, request: pb.ListFilter) -> pb.MachineList:
    return fleet.list(request.states, request.max_results, request.since_revision)
