"""Protobuf and gRPC modules generated from proto/bigfleet/v1alpha1 at build time.

The package path equals the proto package so that the generated imports
(`from bigfleet.v1alpha1 import capacity_pb2`) resolve. Import them through
`bigfleet.wire`, never edit them.
"""
