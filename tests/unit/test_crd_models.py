"""The typed CRD models agree with the CRD schemas and decode what the API server returns."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bigfleet import penalty
from bigfleet.crd import KINDS, CapacityRequest, UpcomingNode, load_crds
from bigfleet.crd import models as m
from bigfleet.crd.drift import compare_kind


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_model_fields_match_the_crd_schema(kind: type[CapacityRequest]) -> None:
    crd = load_crds()[kind.kind]
    assert compare_kind(crd, kind.spec_type, kind.status_type) == []


def test_a_property_added_only_to_the_schema_is_drift() -> None:
    crd = copy.deepcopy(load_crds()["CapacityRequest"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["topologySpread"]["items"]["properties"]["minDomains"] = {"type": "integer"}
    assert compare_kind(crd, m.CapacityRequestSpec, m.CapacityRequestStatus) == [
        "spec.topologySpread.minDomains: in the CRD schema, not in TopologySpread"
    ]


def test_a_field_missing_from_the_schema_is_drift() -> None:
    crd = copy.deepcopy(load_crds()["UpcomingNode"])
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    del status["properties"]["providerID"]
    assert compare_kind(crd, m.UpcomingNodeSpec, m.UpcomingNodeStatus) == [
        "status.providerID: in UpcomingNodeStatus, not in the CRD schema"
    ]


def test_integer_quantities_decode_as_text_and_encode_in_camel_case() -> None:
    spec = m.CapacityRequestSpec.from_object(
        {"resources": {"cpu": 2, "memory": "8Gi"}, "priority": 3, "reclamationPenalty": 0}
    )
    assert spec.resources == {"cpu": "2", "memory": "8Gi"}
    assert spec.to_object() == {
        "resources": {"cpu": "2", "memory": "8Gi"},
        "priority": 3,
        "reclamationPenalty": "0",
    }


def test_provider_id_keeps_its_kubernetes_spelling() -> None:
    status = m.UpcomingNodeStatus(phase="Ready", provider_id="fake://1")
    assert status.to_object() == {"phase": "Ready", "providerID": "fake://1"}
    assert (
        m.UpcomingNodeStatus.from_object({"phase": "Ready", "providerID": "x"}).provider_id == "x"
    )


def test_fields_from_a_newer_crd_version_are_tolerated() -> None:
    spec = m.ShardSpec.from_object({"dryRun": True, "someFutureSwitch": 1})
    assert spec == m.ShardSpec(dry_run=True)


def _req(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


@pytest.mark.parametrize(
    "bad",
    [
        {"resources": {"cpu": "-1"}, "priority": 1},
        {"resources": {"cpu": "lots"}, "priority": 1},
        {"resources": {}, "priority": 1},
        {"resources": {"cpu": "1"}, "priority": 2**31},
        {"resources": {"cpu": "1"}, "priority": 1, "interruptionPenalty": "-5"},
        {
            "resources": {"cpu": "1"},
            "priority": 1,
            "requirements": [{"key": "rack", "operator": "Same"}],
        },
        {"resources": {"cpu": "1"}},
        # The examples of the issue that asked for stricter CRDs.
        {"resources": {"!!bad name": "1"}, "priority": 1},
        {"resources": {"cpu": "1e100"}, "priority": 1},
        {"resources": {"cpu": "1"}, "priority": 1, "interruptionPenalty": "1e30"},
        {"resources": {"cpu": "1"}, "priority": 1, "reclamationPenalty": "1000000001"},
        {"resources": {"cpu": "1"}, "priority": 1, "requirements": [_req("-zone", "a")]},
        {"resources": {"cpu": "1"}, "priority": 1, "requirements": [_req("zone", "a b")]},
        {"resources": {"cpu": "1"}, "priority": 1, "requirements": [_req("zone", "a" * 64)]},
        {"resources": {"cpu": "1"}, "priority": 1, "requirements": [_req("zone")]},
        {
            "resources": {"cpu": "1"},
            "priority": 1,
            "requirements": [_req(f"k{i}", "v") for i in range(65)],
        },
        {"resources": {f"r{i}": "1" for i in range(65)}, "priority": 1},
        {
            "resources": {"cpu": "1"},
            "priority": 1,
            "coLocation": {
                "topologyKey": "rack",
                "labelSelector": {"matchLabels": {f"k{i}": "v" for i in range(5000)}},
            },
        },
        {
            "resources": {"cpu": "1"},
            "priority": 1,
            "topologySpread": [
                {"topologyKey": "a/b/c", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}
            ],
        },
    ],
)
def test_models_refuse_what_the_schema_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        m.CapacityRequestSpec.from_object(bad)


def test_the_boundary_values_decode() -> None:
    longest_key = f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}/{'n' * 63}"
    assert len(longest_key) == m.LABEL_KEY_MAX_LENGTH
    spec = m.CapacityRequestSpec.from_object(
        {
            "resources": {"cpu": "1Pi", "memory": 2**50, "hugepages-2Mi": "0", "nvidia.com/gpu": 1},
            "priority": -(2**31),
            "requirements": [_req(longest_key, "v" * 63, "", "A-b_c.9")]
            + [{"key": f"k{i}", "operator": "Exists"} for i in range(63)],
            "interruptionPenalty": "8388608",
            "reclamationPenalty": "8Mi",
        }
    )
    assert spec.resources["cpu"] == "1Pi"
    assert len(spec.requirements or ()) == m.MAX_REQUIREMENTS


def _schema_limits(schema: dict[str, Any], path: str, found: dict[str, object]) -> None:
    for word in ("maxLength", "maxItems", "maxProperties"):
        if word in schema:
            found[f"{path}:{word}"] = schema[word]
    for name, inner in schema.get("properties", {}).items():
        _schema_limits(inner, f"{path}.{name}", found)
    if isinstance(schema.get("additionalProperties"), dict):
        _schema_limits(schema["additionalProperties"], f"{path}{{}}", found)
    if "items" in schema:
        _schema_limits(schema["items"], f"{path}[]", found)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_string_list_and_map_of_the_schemas_is_bounded(
    kind: type[CapacityRequest],
) -> None:
    top = load_crds()[kind.kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    unbounded: list[str] = []

    def walk(schema: dict[str, Any], path: str) -> None:
        plain_string = schema.get("type") == "string" and "enum" not in schema
        if (plain_string or schema.get("x-kubernetes-int-or-string")) and "maxLength" not in schema:
            unbounded.append(f"{path}: maxLength")
        if schema.get("type") == "array":
            if "maxItems" not in schema:
                unbounded.append(f"{path}: maxItems")
            walk(schema.get("items", {}), f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            if "maxProperties" not in schema:
                unbounded.append(f"{path}: maxProperties")
            walk(schema["additionalProperties"], f"{path}{{}}")
        for name, inner in schema.get("properties", {}).items():
            walk(inner, f"{path}.{name}")

    for section in ("spec", "status"):
        walk(top["properties"][section], section)
    assert unbounded == []


def test_the_models_and_the_schema_share_the_limits() -> None:
    limits: dict[str, object] = {}
    top = load_crds()["CapacityRequest"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    _schema_limits(top["properties"]["spec"], "spec", limits)
    assert limits["spec.requirements:maxItems"] == m.MAX_REQUIREMENTS
    assert limits["spec.requirements[].values:maxItems"] == m.MAX_VALUES
    assert limits["spec.requirements[].key:maxLength"] == m.LABEL_KEY_MAX_LENGTH
    assert limits["spec.requirements[].values[]:maxLength"] == 63
    assert limits["spec.resources:maxProperties"] == m.MAX_RESOURCES
    assert limits["spec.resources{}:maxLength"] == m.QUANTITY_MAX_LENGTH
    assert limits["spec.topologySpread:maxItems"] == m.MAX_SPREAD
    assert limits["spec.coLocation.labelSelector.matchLabels:maxProperties"] == m.MAX_LABELS
    assert limits["spec.coLocation.labelSelector.matchExpressions:maxItems"] == m.MAX_SPREAD
    text = json.dumps(top["properties"]["spec"])
    assert "quantity('1Pi')" in text and m.MAX_RESOURCE_QUANTITY == 2**50
    assert "quantity('1G')" in text and m.MAX_PENALTY == 10**9
    assert m.MAX_DOLLARS == 2**23 == penalty.upper_bound(penalty.LAST_POWER)


def test_models_are_immutable() -> None:
    spec = m.ShardSpec()
    with pytest.raises(ValidationError):
        spec.dry_run = True  # type: ignore[misc]


def test_manifest_carries_kind_namespace_and_encoded_spec() -> None:
    spec = m.UpcomingNodeSpec(resources={"cpu": "1"})
    assert UpcomingNode.manifest("un-1", spec, labels={"a": "b"}) == {
        "apiVersion": "bigfleet.lucy.sh/v1alpha1",
        "kind": "UpcomingNode",
        "metadata": {"name": "un-1", "labels": {"a": "b"}},
        "spec": {"resources": {"cpu": "1"}},
    }


_quantity = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.builds(
        lambda n, u: f"{n}{u}", st.integers(0, 4096), st.sampled_from(["m", "k", "Mi", "Gi"])
    ),
)
_dollars = st.one_of(
    st.integers(min_value=0, max_value=2**23).map(str),
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 4096), st.sampled_from(["m", "k", "Ki"])),
)
_requirement = st.builds(
    m.NodeSelectorRequirement,
    key=st.sampled_from(["zone", "rack", "node.kubernetes.io/instance-type"]),
    operator=st.sampled_from(["In", "NotIn"]),
    values=st.lists(
        st.from_regex(r"[abc]([-abc]{0,3}[abc])?", fullmatch=True), min_size=1, max_size=3
    ).map(tuple),
)
_spec = st.builds(
    m.CapacityRequestSpec,
    requirements=st.none() | st.lists(_requirement, max_size=3).map(tuple),
    resources=st.dictionaries(
        st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), _quantity, min_size=1
    ),
    priority=st.integers(-(2**31), 2**31 - 1),
    interruption_penalty=st.none() | _dollars,
    reclamation_penalty=st.none() | _dollars,
)


@given(_spec)
def test_capacity_request_spec_survives_encode_and_decode(spec: m.CapacityRequestSpec) -> None:
    assert m.CapacityRequestSpec.from_object(spec.to_object()) == spec
