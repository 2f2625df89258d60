"""The compiled wire modules match the contract field by field, and drift is caught."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from bigfleet import wire
from bigfleet.wire import capacity_pb2, contract, shard_pb2

REPO = Path(__file__).resolve().parents[2]

Mutation = Callable[[dict[str, descriptor_pb2.FileDescriptorProto]], None]


def _protos() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    protos = {}
    for module in wire.FILES:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        protos[proto.name] = proto
    return protos


def _compile(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> list[FileDescriptor]:
    """Load (possibly mutated) file protos into a fresh pool, dependencies first."""
    pool = descriptor_pool.DescriptorPool()
    for name in contract.FILES:
        pool.Add(protos[name])
    return [pool.FindFileByName(name) for name in contract.FILES]


def _message(
    protos: dict[str, descriptor_pb2.FileDescriptorProto], name: str
) -> descriptor_pb2.DescriptorProto:
    for proto in protos.values():
        for message in proto.message_type:
            if message.name == name:
                return message
    raise KeyError(name)


def _field(
    protos: dict[str, descriptor_pb2.FileDescriptorProto], message: str, field: str
) -> descriptor_pb2.FieldDescriptorProto:
    (found,) = [f for f in _message(protos, message).field if f.name == field]
    return found


def test_compiled_descriptors_match_the_contract() -> None:
    assert contract.compare(module.DESCRIPTOR for module in wire.FILES) == []


def _renumber(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    _field(protos, "CapacityNeed", "priority").number = 10


def _retype(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    _field(
        protos, "Machine", "price_per_hour"
    ).type = descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT


def _unrepeat(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    _field(
        protos, "ReclaimInstruction", "nodes"
    ).label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL


def _rename(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    _field(protos, "Hello", "cluster_id").name = "cluster"


def _drop_reserved(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    del _message(protos, "CapacityNeed").reserved_range[:]


def _enum_value(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    (bucket,) = [
        e for e in protos["bigfleet/v1alpha1/capacity.proto"].enum_type if e.name == "PenaltyBucket"
    ]
    bucket.value[-1].number = 28


def _unstream(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    (service,) = protos["bigfleet/v1alpha1/shard.proto"].service
    service.method[0].client_streaming = False


def _extra_field(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    _message(protos, "TransitionAck").field.add(
        name="note",
        number=3,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )


def _package(protos: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    def move(name: str) -> str:
        return name.replace(".bigfleet.v1alpha1.", ".bigfleet.v1.")

    def fields(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            for field in message.field:
                if field.type_name:  # references are fully qualified: move them along
                    field.type_name = move(field.type_name)
            fields(message.nested_type)

    for proto in protos.values():
        proto.package = "bigfleet.v1"
        fields(proto.message_type)
        for service in proto.service:
            for method in service.method:
                method.input_type = move(method.input_type)
                method.output_type = move(method.output_type)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_renumber, "field CapacityNeed.priority: want '3 int32', have '10 int32'"),
        (_retype, "field Machine.price_per_hour: want '7 double', have '7 float'"),
        (_unrepeat, "field ReclaimInstruction.nodes: want '2 repeated string', have '2 string'"),
        (_rename, "field Hello.cluster_id: missing"),
        (_drop_reserved, "reserved CapacityNeed: want (4,), have ()"),
        (_enum_value, "enum PenaltyBucket: want"),
        (_unstream, "service Shard: want"),
        (_extra_field, "field TransitionAck.note: not in the contract"),
        (_package, "file bigfleet/v1alpha1/capacity.proto: want 'bigfleet.v1alpha1'"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:],
)
def test_drift_from_the_contract_is_reported(mutate: Mutation, expected: str) -> None:
    protos = _protos()
    mutate(protos)
    problems = contract.compare(_compile(protos))
    assert any(p.startswith(expected) for p in problems), problems


def test_generated_modules_are_current_with_proto_sources(tmp_path: Path) -> None:
    # Compiling proto/ afresh must give exactly the descriptors the package imports,
    # so nobody edits generated code or forgets to regenerate after a proto change.
    from grpc_tools import protoc

    out = tmp_path / "descriptors.pb"
    sources = sorted((REPO / "proto" / "bigfleet" / "v1alpha1").glob("*.proto"))
    assert (
        protoc.main(
            ["protoc", f"-I{REPO / 'proto'}", f"--descriptor_set_out={out}", *map(str, sources)]
        )
        == 0
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    for file in fresh.file:
        _drop_json_names(file.message_type)  # protoc adds them to descriptor sets only
    imported = {
        module.DESCRIPTOR.name: descriptor_pb2.FileDescriptorProto.FromString(
            module.DESCRIPTOR.serialized_pb
        )
        for module in wire.FILES
    }
    assert {f.name: f for f in fresh.file} == imported


def _drop_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _drop_json_names(message.nested_type)


def test_hello_encodes_with_the_reference_field_numbers() -> None:
    # Field 1 (cluster_id) and 3 (protocol_version); 2 is reserved.
    hello = shard_pb2.Hello(cluster_id="c1", protocol_version="v1alpha1")
    assert hello.SerializeToString() == b"\x0a\x02c1\x1a\x08v1alpha1"


def test_penalty_buckets_double_from_one_dollar() -> None:
    names = capacity_pb2.PenaltyBucket.keys()
    powers = [n for n in names if n.removeprefix("PENALTY_BUCKET_").isdigit()]
    bounds = [int(n.removeprefix("PENALTY_BUCKET_")) for n in powers]
    assert bounds == [2**i for i in range(24)]
    assert capacity_pb2.PenaltyBucket.Value("PENALTY_BUCKET_1") == 3
    assert capacity_pb2.PenaltyBucket.Value("PENALTY_BUCKET_PINNED") == 27


def test_extensions_stay_out_of_the_reference_numbers() -> None:
    """Our additions use numbers the reference never will, and only on messages it has."""
    for message, fields in contract.EXTENSIONS.items():
        assert message in contract.MESSAGES
        assert not fields.keys() & contract.MESSAGES[message].keys()
        for rendered in fields.values():
            assert int(rendered.split()[0]) >= contract.EXTENSION_FLOOR, (message, rendered)
