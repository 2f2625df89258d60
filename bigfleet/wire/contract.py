"""The wire contract as data, and a comparer that checks compiled descriptors against it.

The tables restate, field by field, what the Go reference puts on the wire
(package bigfleet.v1alpha1): message fields with number, label and type,
reserved numbers, enum values and service methods. `compare()` walks the
descriptors the generated modules were compiled from and returns every
difference, so a proto edit that would break wire compatibility fails the
test suite and `bigfleet selfcheck`.

Field notation: "<number> [repeated ]<type>[ oneof <name>]", where <type> is a
scalar name, `map<K,V>`, or a message/enum name relative to the package
(nested types as `Outer.Inner`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
)

PACKAGE = "bigfleet.v1alpha1"

_BUCKETS = {f"PENALTY_BUCKET_{2 ** (n - 3)}": n for n in range(3, 27)}

ENUMS: dict[str, dict[str, int]] = {
    "NodeSelectorRequirement.Operator": {
        "OPERATOR_UNSPECIFIED": 0,
        "OPERATOR_IN": 1,
        "OPERATOR_NOT_IN": 2,
        "OPERATOR_EXISTS": 3,
        "OPERATOR_DOES_NOT_EXIST": 4,
        "OPERATOR_SAME": 5,
    },
    "TopologySpread.WhenUnsatisfiable": {
        "WHEN_UNSATISFIABLE_UNSPECIFIED": 0,
        "WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE": 1,
        "WHEN_UNSATISFIABLE_SCHEDULE_ANYWAY": 2,
    },
    "PenaltyBucket": {
        "PENALTY_BUCKET_UNSPECIFIED": 0,
        "PENALTY_BUCKET_ZERO": 1,
        "PENALTY_BUCKET_HALF_DOLLAR": 2,
        **_BUCKETS,
        "PENALTY_BUCKET_PINNED": 27,
    },
    "AvailableCapacityUpdate.Confidence": {
        "CONFIDENCE_UNSPECIFIED": 0,
        "CONFIDENCE_NONE": 1,
        "CONFIDENCE_LOW": 2,
        "CONFIDENCE_MEDIUM": 3,
        "CONFIDENCE_HIGH": 4,
    },
    "UnmetReason": {
        "UNMET_REASON_UNSPECIFIED": 0,
        "UNMET_REASON_PRIORITY_STARVED": 1,
        "UNMET_REASON_NO_MATCHING_SUPPLY": 2,
        "UNMET_REASON_TOPOLOGY_UNSATISFIABLE": 3,
        "UNMET_REASON_PREEMPTION_EXHAUSTED": 4,
    },
    "MachineState": {
        "MACHINE_STATE_UNSPECIFIED": 0,
        "MACHINE_STATE_SPECULATIVE": 1,
        "MACHINE_STATE_CREATING": 2,
        "MACHINE_STATE_IDLE": 3,
        "MACHINE_STATE_CONFIGURING": 4,
        "MACHINE_STATE_CONFIGURED": 5,
        "MACHINE_STATE_DRAINING": 6,
        "MACHINE_STATE_DELETING": 7,
        "MACHINE_STATE_FAILED": 8,
    },
    "CapacityType": {
        "CAPACITY_TYPE_UNSPECIFIED": 0,
        "CAPACITY_TYPE_BARE_METAL": 1,
        "CAPACITY_TYPE_RESERVED": 2,
        "CAPACITY_TYPE_ON_DEMAND": 3,
        "CAPACITY_TYPE_SPOT": 4,
    },
    "InstructAck.Outcome": {
        "OUTCOME_UNSPECIFIED": 0,
        "OUTCOME_ACCEPTED": 1,
        "OUTCOME_REJECTED_STALE": 2,
        "OUTCOME_REJECTED_INVALID": 3,
        "OUTCOME_FAILED": 4,
    },
}

_FENCE = {"shard_id": "string", "shard_epoch": "int64", "sequence_number": "int64"}


def _fenced(first: int) -> dict[str, str]:
    """The three fencing-token fields, numbered from `first`."""
    return {name: f"{first + i} {kind}" for i, (name, kind) in enumerate(_FENCE.items())}


MESSAGES: dict[str, dict[str, str]] = {
    # capacity.proto
    "ClusterCapacityNeeds": {
        "cluster_id": "1 string",
        "timestamp_unix_nanos": "2 int64",
        "needs": "3 repeated CapacityNeed",
    },
    "CapacityNeed": {
        "requirements": "1 repeated NodeSelectorRequirement",
        "aggregate_resources": "2 map<string,string>",
        "priority": "3 int32",
        "spread": "5 repeated TopologySpread",
        "interruption_penalty_bucket": "6 PenaltyBucket",
        "reclamation_penalty_bucket": "7 PenaltyBucket",
        "min_unit": "8 map<string,string>",
        "group": "9 string",
    },
    "NodeSelectorRequirement": {
        "key": "1 string",
        "operator": "2 NodeSelectorRequirement.Operator",
        "values": "3 repeated string",
    },
    "TopologySpread": {
        "topology_key": "1 string",
        "max_skew": "2 int32",
        "when_unsatisfiable": "3 TopologySpread.WhenUnsatisfiable",
    },
    # shard.proto
    "OperatorMessage": {
        "hello": "1 Hello oneof payload",
        "rollup": "2 ClusterCapacityNeeds oneof payload",
        "bootstrap_response": "3 BootstrapBlobResponse oneof payload",
        "reclaim_ack": "4 ReclaimAck oneof payload",
    },
    "ShardMessage": {
        "ack": "1 Acknowledgement oneof payload",
        "bootstrap_request": "2 BootstrapRequest oneof payload",
        "reclaim_instruction": "3 ReclaimInstruction oneof payload",
        "node_state_update": "4 NodeStateUpdate oneof payload",
        "available_capacity": "5 AvailableCapacityUpdate oneof payload",
    },
    "Hello": {"cluster_id": "1 string", "protocol_version": "3 string"},
    "Acknowledgement": {
        "echo": "1 string",
        "coordinator_term": "2 int64",
        "shard_epoch": "3 int64",
    },
    "BootstrapRequest": {
        "request_id": "1 string",
        "requirements": "2 repeated NodeSelectorRequirement",
        "cluster_id": "3 string",
    },
    "BootstrapBlobResponse": {
        "request_id": "1 string",
        "user_data": "2 bytes",
        "ttl_seconds": "3 int64",
        "error": "4 string",
    },
    "ReclaimInstruction": {
        "instruction_id": "1 string",
        "nodes": "2 repeated string",
        "grace_period_seconds": "3 int64",
        "preemptor_priority": "4 int32",
    },
    "ReclaimAck": {"instruction_id": "1 string", "nodes_started": "2 int32"},
    "NodeStateUpdate": {
        "supersedes_key": "1 string",
        "machine_id": "2 string",
        "cluster_id": "3 string",
        "state": "4 MachineState",
        "node_name": "5 string",
        "provider_id": "6 string",
        "last_error": "8 string",
        "labels": "9 map<string,string>",
        "resources": "10 Resources",
        "taints": "11 repeated Taint",
    },
    "Taint": {"key": "1 string", "value": "2 string", "effect": "3 string"},
    "AvailableCapacityUpdate": {
        "supersedes_key": "1 string",
        "requirements": "2 repeated NodeSelectorRequirement",
        "resources": "3 Resources",
        "available_count": "4 int32",
        "confidence": "5 AvailableCapacityUpdate.Confidence",
        "cost_per_hour": "6 double",
    },
    # shardread.proto
    "InspectNeedsRequest": {"cluster_id": "1 string", "limit": "2 int32"},
    "InspectNeedsResponse": {
        "header": "1 InspectNeedsHeader oneof frame",
        "need": "2 NeedView oneof frame",
    },
    "InspectNeedsHeader": {
        "cycle": "1 int64",
        "computed_at_unix_nanos": "2 int64",
        "total_needs": "3 int32",
    },
    "NeedView": {
        "need": "1 CapacityNeed",
        "cluster_id": "2 string",
        "arrival_unix_nanos": "3 int64",
        "profile_fingerprint": "4 string",
        "satisfied": "5 bool",
        "residual_deficit": "6 Resources",
        "claimed_machine_count": "7 int32",
        "bootstrap_count": "8 int32",
        "provision_count": "9 int32",
        "same_domain": "10 string",
        "same_satisfiable": "11 bool",
        "acquisition_parked": "12 bool",
        "parked_age_cycles": "13 int32",
        "age_cycles_unmet": "14 int32",
        "unmet_reason": "15 UnmetReason",
        "matching_supply": "16 MatchingSupply",
        "preemption": "17 PreemptionSummary",
        "same_candidates": "18 repeated DomainCoverage",
    },
    "MatchingSupply": {
        "idle": "1 int32",
        "configured": "2 int32",
        "speculative": "3 int32",
        "capped": "4 bool",
    },
    "PreemptionSummary": {"victims_found": "1 int32", "capacity_freed": "2 Resources"},
    "DomainCoverage": {
        "domain": "1 string",
        "coverage_per_mille": "2 int32",
        "satisfiable": "3 bool",
    },
    # provider.proto
    "HostRef": {"provider": "1 string", "ref": "2 string"},
    "Resources": {"resources": "1 map<string,string>"},
    "Machine": {
        "id": "1 string",
        "state": "2 MachineState",
        "host": "3 HostRef",
        "instance_type": "4 string",
        "zone": "5 string",
        "capacity_type": "6 CapacityType",
        "price_per_hour": "7 double",
        "interruption_probability": "8 double",
        "resources": "9 Resources",
        "labels": "10 map<string,string>",
        "last_error": "12 string",
        "allocatable": "13 Resources",
        "cluster": "14 string",
        "shard_metadata": "15 map<string,string>",
    },
    "MachineRef": {"id": "1 string"},
    "MachineList": {"machines": "1 repeated Machine", "revision": "2 bytes"},
    "ListFilter": {
        "states": "1 repeated MachineState",
        "max_results": "4 int32",
        "since_revision": "5 bytes",
    },
    "CreateRequest": {"machine_id": "1 string", **_fenced(3)},
    "ConfigureRequest": {
        "machine_id": "1 string",
        "cluster_id": "2 string",
        "bootstrap_blob": "3 bytes",
        **_fenced(4),
        "shard_metadata": "7 map<string,string>",
    },
    "DrainRequest": {
        "machine_id": "1 string",
        "grace_period_seconds": "2 int64",
        **_fenced(3),
    },
    "DeleteRequest": {"machine_id": "1 string", **_fenced(2)},
    "TransitionAck": {"operation_id": "1 string", "machine": "2 Machine"},
    # coordinator.proto
    "ShardReport": {
        "shard_id": "1 string",
        "cycle": "2 int64",
        "timestamp_unix_nanos": "3 int64",
        "shard_epoch": "4 int64",
        "summary": "5 ShardSummary",
        "shortfalls": "6 repeated Shortfall",
        "instruction_acks": "7 repeated InstructAck",
        "shard_address": "8 string",
    },
    "ShardSummary": {
        "total_machines": "1 int32",
        "free_machines": "2 int32",
        "per_instance_type_counts": "3 map<string,int32>",
        "per_zone_counts": "4 map<string,int32>",
        "utilisation_cpu_fraction": "5 double",
        "utilisation_memory_fraction": "6 double",
        "provider_address": "7 string",  # number unpublished upstream: ADR-0003
    },
    "Shortfall": {
        "requirements": "1 repeated NodeSelectorRequirement",
        "deficit": "2 Resources",
        "priority": "3 int32",
        "age_cycles": "5 int32",
        "interruption_penalty_bucket": "6 PenaltyBucket",
    },
    "ReportAck": {
        "coordinator_term": "1 int64",
        "acknowledged": "2 bool",
        "instructions": "3 repeated CoordinatorInstruction",
    },
    "CoordinatorInstruction": {
        "coordinator_term": "1 int64",
        "sequence_number": "2 int64",
        "instruction_id": "3 string",
        "assign_domain": "4 AssignDomain oneof payload",
        "unassign_domain": "5 UnassignDomain oneof payload",
        "reassign_speculative": "6 ReassignSpeculative oneof payload",
        "cross_shard_drain": "7 CrossShardDrain oneof payload",
        "transfer_ownership": "8 TransferOwnership oneof payload",
    },
    "AssignDomain": {"topology_key": "1 string", "topology_value": "2 string"},
    "UnassignDomain": {"topology_key": "1 string", "topology_value": "2 string"},
    "ReassignSpeculative": {"machine_ids": "1 repeated string"},
    "CrossShardDrain": {"machine_ids": "1 repeated string", "preemptor_priority": "2 int32"},
    "TransferOwnership": {
        "machine_ids": "1 repeated string",
        "from_shard_id": "2 string",
        "to_shard_id": "3 string",
    },
    "InstructAck": {
        "instruction_id": "1 string",
        "outcome": "2 InstructAck.Outcome",
        "reason": "3 string",
    },
    "AssignDomainRequest": {
        "topology_key": "1 string",
        "topology_value": "2 string",
        "shard_id": "3 string",
    },
    "AssignDomainResponse": {},
    "UnassignDomainRequest": {"topology_key": "1 string", "topology_value": "2 string"},
    "UnassignDomainResponse": {},
    "RemoveShardRequest": {"shard_id": "1 string"},
    "RemoveShardResponse": {},
    "ListShardsRequest": {},
    "ListShardsResponse": {"shards": "1 repeated ShardRegistryEntry"},
    "ShardRegistryEntry": {
        "shard_id": "1 string",
        "address": "2 string",
        "registered_at_unix_ns": "3 int64",
        "last_heartbeat_unix_ns": "4 int64",
    },
    "ListDomainAssignmentsRequest": {},
    "ListDomainAssignmentsResponse": {"assignments": "1 repeated DomainAssignment"},
    "DomainAssignment": {
        "topology_key": "1 string",
        "topology_value": "2 string",
        "shard_id": "3 string",
    },
    "ListQuotasRequest": {},
    "ListQuotasResponse": {"allocations": "1 repeated QuotaAllocation"},
    "QuotaAllocation": {
        "provider": "1 string",
        "region": "2 string",
        "per_shard": "3 map<string,int32>",
    },
    "JoinRaftClusterRequest": {"node_id": "1 string", "raft_address": "2 string"},
    "JoinRaftClusterResponse": {},
    "SnapshotSaveRequest": {},
    "SnapshotSaveChunk": {
        "meta_json": "1 bytes oneof payload",
        "data": "2 bytes oneof payload",
    },
    # ADR-0060 reads: names published upstream, numbers ours (ADR-0003).
    "ListShardReportsRequest": {"shard_id": "1 string"},
    "ListShardReportsResponse": {"reports": "1 repeated ShardReportSnapshot"},
    "ShardReportSnapshot": {
        "shard_id": "1 string",
        "cycle": "2 int64",
        "received_at_unix_ns": "3 int64",
        "summary": "4 ShardSummary",
        "shortfalls": "5 repeated Shortfall",
    },
    "ListProvidersRequest": {},
    "ListProvidersResponse": {"providers": "1 repeated ProviderEntry"},
    "ProviderEntry": {"name": "1 string", "address": "2 string", "region": "3 string"},
}

# Retired field numbers that must stay declared `reserved` so nobody reuses them.
RESERVED: dict[str, tuple[int, ...]] = {
    "CapacityNeed": (4,),
    "Hello": (2,),
    "NodeStateUpdate": (7,),
    "AvailableCapacityUpdate": (7, 8, 9),
    "Machine": (11,),
    "ListFilter": (2, 3),
    "CreateRequest": (2,),
    "Shortfall": (4,),
}

SERVICES: dict[str, dict[str, str]] = {
    "Shard": {"Session": "stream OperatorMessage -> stream ShardMessage"},
    "ShardRead": {"InspectNeeds": "InspectNeedsRequest -> stream InspectNeedsResponse"},
    "CapacityProvider": {
        "Create": "CreateRequest -> TransitionAck",
        "Configure": "ConfigureRequest -> TransitionAck",
        "Drain": "DrainRequest -> TransitionAck",
        "Delete": "DeleteRequest -> TransitionAck",
        "Get": "MachineRef -> Machine",
        "List": "ListFilter -> MachineList",
    },
    "Coordinator": {
        "ReportShard": "ShardReport -> ReportAck",
        "AssignDomain": "AssignDomainRequest -> AssignDomainResponse",
        "UnassignDomain": "UnassignDomainRequest -> UnassignDomainResponse",
        "RemoveShard": "RemoveShardRequest -> RemoveShardResponse",
        "ListShards": "ListShardsRequest -> ListShardsResponse",
        "ListDomainAssignments": "ListDomainAssignmentsRequest -> ListDomainAssignmentsResponse",
        "ListQuotas": "ListQuotasRequest -> ListQuotasResponse",
        "JoinRaftCluster": "JoinRaftClusterRequest -> JoinRaftClusterResponse",
        "SnapshotSave": "SnapshotSaveRequest -> stream SnapshotSaveChunk",
        "ListShardReports": "ListShardReportsRequest -> ListShardReportsResponse",
        "ListProviders": "ListProvidersRequest -> ListProvidersResponse",
    },
}

FILES = (
    "bigfleet/v1alpha1/capacity.proto",
    "bigfleet/v1alpha1/provider.proto",
    "bigfleet/v1alpha1/shard.proto",
    "bigfleet/v1alpha1/shardread.proto",
    "bigfleet/v1alpha1/coordinator.proto",
)

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def _local(full_name: str) -> str:
    return full_name.removeprefix(PACKAGE + ".")


def _type_of(field: FieldDescriptor) -> str:
    if field.type in _SCALARS:
        return _SCALARS[field.type]
    target = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else field.enum_type
    if target is None:
        raise ValueError(f"field {field.full_name} has type {field.type} but no target")
    return _local(target.full_name)


def render_field(field: FieldDescriptor) -> str:
    """Render one compiled field in the contract's notation."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = (message.fields_by_name[n] for n in ("key", "value"))
        return f"{field.number} map<{_type_of(key)},{_type_of(value)}>"
    text = f"{field.number} {_type_of(field)}"
    if field.is_repeated:
        text = f"{field.number} repeated {_type_of(field)}"
    oneof = field.containing_oneof
    if oneof is not None:
        text += f" oneof {oneof.name}"
    return text


def _walk_messages(messages: Iterable[Descriptor]) -> Iterable[Descriptor]:
    for message in messages:
        if message.GetOptions().map_entry:
            continue
        yield message
        yield from _walk_messages(message.nested_types)


def _walk_enums(files: Iterable[FileDescriptor]) -> Iterable[EnumDescriptor]:
    for file in files:
        yield from file.enum_types_by_name.values()
        for message in _walk_messages(file.message_types_by_name.values()):
            yield from message.enum_types


def _reserved_numbers(message: Descriptor) -> tuple[int, ...]:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return tuple(n for r in proto.reserved_range for n in range(r.start, r.end))


def _diff(label: str, expected: Mapping[str, object], actual: Mapping[str, object]) -> list[str]:
    """Differences between two name -> value tables, each line starting with label + name."""
    problems = []
    for name in sorted(expected.keys() - actual.keys()):
        problems.append(f"{label}{name}: missing (want {expected[name]!r})")
    for name in sorted(actual.keys() - expected.keys()):
        problems.append(f"{label}{name}: not in the contract (have {actual[name]!r})")
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            problems.append(f"{label}{name}: want {expected[name]!r}, have {actual[name]!r}")
    return problems


# BigFleet's own additions: fields numbered from EXTENSION_FLOOR up, a range the
# reference never uses. Peers that do not know them ignore them (proto3 skips
# unknown fields), so both directions stay compatible; see each field's comment.
EXTENSION_FLOOR = 1000
EXTENSIONS: dict[str, dict[str, str]] = {
    "InspectNeedsRequest": {"page_token": "1000 string"},
    "InspectNeedsHeader": {"next_page_token": "1000 string"},
    "MatchingSupply": {"in_transition": "1000 int32"},
}


def compare(files: Iterable[FileDescriptor]) -> list[str]:
    """Every difference between the compiled files and the contract; empty when compatible."""
    files = list(files)
    problems = _diff("file ", {f: PACKAGE for f in FILES}, {f.name: f.package for f in files})

    messages = {
        _local(m.full_name): m
        for f in files
        for m in _walk_messages(f.message_types_by_name.values())
    }
    problems += _diff("message ", dict.fromkeys(MESSAGES, True), dict.fromkeys(messages, True))
    for name in sorted(MESSAGES.keys() & messages.keys()):
        actual = {fld.name: render_field(fld) for fld in messages[name].fields}
        expected = {**MESSAGES[name], **EXTENSIONS.get(name, {})}
        problems += _diff(f"field {name}.", expected, actual)
        problems += _diff(
            "reserved ", {name: RESERVED.get(name, ())}, {name: _reserved_numbers(messages[name])}
        )

    enums = {_local(e.full_name): {v.name: v.number for v in e.values} for e in _walk_enums(files)}
    problems += _diff("enum ", ENUMS, enums)

    services = {
        s.name: {
            m.name: (
                f"{'stream ' if m.client_streaming else ''}{_local(m.input_type.full_name)} -> "
                f"{'stream ' if m.server_streaming else ''}{_local(m.output_type.full_name)}"
            )
            for m in s.methods
        }
        for f in files
        for s in f.services_by_name.values()
    }
    problems += _diff("service ", SERVICES, services)
    return problems
