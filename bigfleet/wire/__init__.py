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
# What both ends of Shard.Session say in Hello/HelloAck.
PROTOCOL_VERSION = "v1alpha1"

# Every gRPC server and client lifts the message ceiling to 256 MiB each way: an
# oversized full-replacement roll-up must slow a cycle down, never loop reconnecting.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GRPC_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)

FILES = (capacity_pb2, provider_pb2, shard_pb2, shardread_pb2, coordinator_pb2)

__all__ = [
    "FILES",
    "GRPC_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
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
