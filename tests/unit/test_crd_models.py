"""The typed CRD models agree with the CRD schemas and decode what the API server returns."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

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
    ],
)
def test_models_refuse_what_the_schema_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        m.CapacityRequestSpec.from_object(bad)


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
_requirement = st.builds(
    m.NodeSelectorRequirement,
    key=st.sampled_from(["zone", "rack", "node.kubernetes.io/instance-type"]),
    operator=st.sampled_from(["In", "NotIn"]),
    values=st.lists(st.text("abc-", min_size=1, max_size=5), min_size=1, max_size=3).map(tuple),
)
_spec = st.builds(
    m.CapacityRequestSpec,
    requirements=st.none() | st.lists(_requirement, max_size=3).map(tuple),
    resources=st.dictionaries(
        st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), _quantity, min_size=1
    ),
    priority=st.integers(-(2**31), 2**31 - 1),
    interruption_penalty=st.none() | _quantity,
    reclamation_penalty=st.none() | _quantity,
)


@given(_spec)
def test_capacity_request_spec_survives_encode_and_decode(spec: m.CapacityRequestSpec) -> None:
    assert m.CapacityRequestSpec.from_object(spec.to_object()) == spec
