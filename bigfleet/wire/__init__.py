"""The wire contract: generated protobuf/gRPC modules of proto package bigfleet.v1alpha1.

Re-exported here so components write `from bigfleet.wire import shard_pb2`
and never depend on where the generator put the files.
"""

from bigfleet.v1alpha1 import (
    capacity_pb2,
    coordinator_pb2,
    coordinator_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    shard_pb2,
    shard_pb2_grpc,
    shardread_pb2,
    shardread_pb2_grpc,
)

PROTO_PACKAGE = "bigfleet.v1alpha1"

FILES = (capacity_pb2, provider_pb2, shard_pb2, shardread_pb2, coordinator_pb2)

__all__ = [
    "FILES",
    "PROTO_PACKAGE",
    "capacity_pb2",
    "coordinator_pb2",
    "coordinator_pb2_grpc",
    "provider_pb2",
    "provider_pb2_grpc",
    "shard_pb2",
    "shard_pb2_grpc",
    "shardread_pb2",
    "shardread_pb2_grpc",
]
