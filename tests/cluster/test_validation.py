"""The API server itself refuses malformed BigFleet objects, naming the offending field."""

from __future__ import annotations

import copy
from typing import Any

import kr8s
import kr8s.asyncio
import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, AvailableCapacity, CapacityRequest, Shard, UpcomingNode
from bigfleet.crd import models as m

VALID_SPEC: dict[str, Any] = {
    "resources": {"cpu": "2", "memory": "4Gi"},
    "priority": 10,
    "requirements": [{"key": "zone", "operator": "In", "values": ["a"]}],
    "topologySpread": [
        {"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}
    ],
    "coLocation": {"topologyKey": "rack"},
    "interruptionPenalty": "1",
    "reclamationPenalty": 0,
}


def _without(path: str) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    del spec[path]
    return spec


def _with(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(VALID_SPEC), **changes}


# (case, spec, the field path the server's message must name, a phrase it must contain)
BAD_CAPACITY_REQUESTS = [
    ("missing resources", _without("resources"), "spec.resources", "Required value"),
    ("missing priority", _without("priority"), "spec.priority", "Required value"),
    ("priority not an integer", _with(priority="high"), "spec.priority", "integer"),
    ("priority beyond int32", _with(priority=2**31), "spec.priority", "less than or equal"),
    (
        "negative cpu",
        _with(resources={"cpu": "-1"}),
        "spec.resources[cpu]",
        "non-negative quantity, such as 2, 500m or 8Gi, not -1",
    ),
    (
        "negative integer memory",
        _with(resources={"memory": -5}),
        "spec.resources[memory]",
        "non-negative quantity, such as 2, 500m or 8Gi, not -5",
    ),
    (
        "garbage quantity",
        _with(resources={"cpu": "lots"}),
        "spec.resources[cpu]",
        "non-negative quantity, such as 2, 500m or 8Gi, not lots",
    ),
    ("empty resources", _with(resources={}), "spec.resources", "at least 1"),
    (
        "negative interruption penalty",
        _with(interruptionPenalty="-3"),
        "spec.interruptionPenalty",
        "non-negative quantity, such as 2, 500m or 8Gi, not -3",
    ),
    (
        "negative reclamation penalty",
        _with(reclamationPenalty=-1),
        "spec.reclamationPenalty",
        "non-negative quantity, such as 2, 500m or 8Gi, not -1",
    ),
    (
        "unknown requirement operator",
        _with(requirements=[{"key": "zone", "operator": "Near", "values": ["a"]}]),
        "spec.requirements[0].operator",
        "Unsupported value",
    ),
    (
        "wire-only Same operator",
        _with(requirements=[{"key": "rack", "operator": "Same"}]),
        "spec.requirements[0].operator",
        "Unsupported value",
    ),
    (
        "requirement without key",
        _with(requirements=[{"operator": "Exists"}]),
        "spec.requirements[0].key",
        "Required value",
    ),
    (
        "In without values",
        _with(requirements=[{"key": "zone", "operator": "In"}]),
        "spec.requirements[0]",
        "values must be non-empty",
    ),
    (
        "Exists with values",
        _with(requirements=[{"key": "zone", "operator": "Exists", "values": ["a"]}]),
        "spec.requirements[0]",
        "values must be non-empty",
    ),
    (
        "unknown whenUnsatisfiable",
        _with(topologySpread=[{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "Maybe"}]),
        "spec.topologySpread[0].whenUnsatisfiable",
        "Unsupported value",
    ),
    (
        "zero maxSkew",
        _with(
            topologySpread=[
                {"topologyKey": "z", "maxSkew": 0, "whenUnsatisfiable": "DoNotSchedule"}
            ]
        ),
        "spec.topologySpread[0].maxSkew",
        "greater than or equal to 1",
    ),
    (
        "coLocation without topologyKey",
        _with(coLocation={}),
        "spec.coLocation.topologyKey",
        "Required value",
    ),
    (
        "requirements not a list",
        _with(requirements={"key": "zone"}),
        "spec.requirements",
        "must be of type array",
    ),
    # The examples of the issue that asked for stricter CRDs, one each.
    (
        "invalid label key",
        _with(requirements=[{"key": "-zone/", "operator": "Exists"}]),
        "spec.requirements[0].key",
        "must be a label key",
    ),
    (
        "invalid label value",
        _with(requirements=[{"key": "zone", "operator": "In", "values": ["zone a!"]}]),
        "spec.requirements[0].values[0]",
        "must be a label value",
    ),
    (
        "1,000-character label value",
        _with(requirements=[{"key": "zone", "operator": "In", "values": ["a" * 1000]}]),
        "spec.requirements[0].values[0]",
        "may not be more than 63 bytes",
    ),
    (
        "5,000 labels",
        _with(
            coLocation={
                "topologyKey": "rack",
                "labelSelector": {"matchLabels": {f"k{i}": "v" for i in range(5000)}},
            }
        ),
        "spec.coLocation.labelSelector.matchLabels",
        "must have at most 64 items",
    ),
    (
        "!!bad name resource",
        _with(resources={"cpu": "1", "!!bad name": "1"}),
        "spec.resources",
        "resource names must be qualified names such as cpu, memory or nvidia.com/gpu, "
        "not !!bad name",
    ),
    (
        "cpu 1e100",
        _with(resources={"cpu": "1e100"}),
        "spec.resources[cpu]",
        "must be at most 1Pi (1125899906842624), not 1e100",
    ),
    (
        "penalty 1e30",
        _with(interruptionPenalty="1e30"),
        "spec.interruptionPenalty",
        "must be at most 1G dollars (anything above 8388608 already pins the request), not 1e30",
    ),
    # And their neighbours.
    (
        "label key with two slashes",
        _with(
            topologySpread=[
                {"topologyKey": "a/b/c", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}
            ]
        ),
        "spec.topologySpread[0].topologyKey",
        "must be a label key",
    ),
    (
        "label key name of 64 characters",
        _with(coLocation={"topologyKey": "x" * 64}),
        "spec.coLocation.topologyKey",
        "must be a label key",
    ),
    (
        "label key prefix not a DNS subdomain",
        _with(requirements=[{"key": "Example.COM/zone", "operator": "Exists"}]),
        "spec.requirements[0].key",
        "must be a label key",
    ),
    (
        "invalid selector label key",
        _with(coLocation={"topologyKey": "rack", "labelSelector": {"matchLabels": {"a b": "c"}}}),
        "spec.coLocation.labelSelector.matchLabels",
        "label keys must be qualified names, not a b",
    ),
    (
        "invalid selector label value",
        _with(coLocation={"topologyKey": "rack", "labelSelector": {"matchLabels": {"app": "_x"}}}),
        "spec.coLocation.labelSelector.matchLabels[app]",
        "must be a label value",
    ),
    (
        "selector In without values",
        _with(
            coLocation={
                "topologyKey": "rack",
                "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]},
            }
        ),
        "spec.coLocation.labelSelector.matchExpressions[0]",
        "values must be non-empty",
    ),
    (
        "65 requirements",
        _with(requirements=[{"key": f"k{i}", "operator": "Exists"} for i in range(65)]),
        "spec.requirements",
        "must have at most 64 items",
    ),
    (
        "65 values",
        _with(requirements=[{"key": "zone", "operator": "In", "values": ["a"] * 65}]),
        "spec.requirements[0].values",
        "must have at most 64 items",
    ),
    (
        "65 resources",
        _with(resources={f"example.com/r{i}": "1" for i in range(65)}),
        "spec.resources",
        "must have at most 64 items",
    ),
    (
        "memory just above 1Pi",
        _with(resources={"memory": 2**50 + 1}),
        "spec.resources[memory]",
        "must be at most 1Pi",
    ),
    (
        "reclamation penalty just above the bound",
        _with(reclamationPenalty="1000000000001m"),
        "spec.reclamationPenalty",
        "must be at most 1G dollars",
    ),
    (
        "integer penalty just above the bound",
        _with(interruptionPenalty=10**9 + 1),
        "spec.interruptionPenalty",
        "must be at most 1G dollars",
    ),
    (
        "quantity text of 65 characters",
        _with(resources={"cpu": "1" * 65}),
        "spec.resources.cpu",
        "may not be more than 64 bytes",
    ),
]

# The largest of everything the schema admits: each limit reached, none exceeded.
LONGEST_KEY = f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}/{'n' * 63}"  # 253 + 1 + 63
BOUNDARY_SPEC: dict[str, Any] = {
    "resources": {
        "cpu": "1Pi",
        "memory": 2**50,
        "hugepages-2Mi": "0",
        "nvidia.com/gpu": 1,
        **{f"example.com/r{i}": "1" for i in range(60)},
    },
    "priority": -(2**31),
    "requirements": [
        {"key": LONGEST_KEY, "operator": "In", "values": ["v" * 63, "", "A-b_c.9"] + ["x"] * 61}
    ]
    + [{"key": f"k{i}", "operator": "Exists"} for i in range(63)],
    "topologySpread": [
        {"topologyKey": f"k{i}", "maxSkew": 2**31 - 1, "whenUnsatisfiable": "DoNotSchedule"}
        for i in range(16)
    ],
    "coLocation": {
        "topologyKey": "n" * 63,
        "labelSelector": {
            "matchLabels": {f"example.com/k{i}": "v" * 63 for i in range(64)},
            "matchExpressions": [
                {"key": f"k{i}", "operator": "NotIn", "values": ["a"] * 64} for i in range(16)
            ],
        },
    },
    "interruptionPenalty": "8388608",
    "reclamationPenalty": "8Mi",
}


def _request(name: str, namespace: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "CapacityRequest",
        "metadata": {"name": name, "namespace": namespace},
    }
    if spec is not None:
        manifest["spec"] = spec
    return manifest


def _error_text(err: kr8s.ServerError) -> str:
    assert err.response is not None
    assert err.response.status_code == 422, err.response.text
    return str(err.response.json()["message"])


@pytest.mark.parametrize(
    ("spec", "field", "phrase"),
    [
        pytest.param(spec, field, phrase, id=case)
        for case, spec, field, phrase in BAD_CAPACITY_REQUESTS
    ],
)
async def test_bad_capacity_request_is_refused_naming_the_field(
    api: kr8s.asyncio.Api, namespace: str, spec: dict[str, Any], field: str, phrase: str
) -> None:
    manifest = _request("bad", namespace, spec)
    with pytest.raises(kr8s.ServerError) as caught:
        await CapacityRequest(manifest, api=api).create()
    message = _error_text(caught.value)
    assert field in message
    assert phrase in message
    # Nothing was stored.
    assert [o async for o in api.get("capacityrequests", namespace=namespace)] == []


async def test_the_valid_baseline_is_accepted(api: kr8s.asyncio.Api, namespace: str) -> None:
    # Guards the table above: each bad case differs from this accepted spec in one way.
    manifest = _request("good", namespace, VALID_SPEC)
    await CapacityRequest(manifest, api=api).create()


async def test_the_boundary_values_are_accepted_and_decode(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    request = CapacityRequest(_request("edge", namespace, BOUNDARY_SPEC), api=api)
    await request.create()
    stored = await CapacityRequest.get("edge", namespace=namespace, api=api)
    spec = stored.spec_model()
    assert isinstance(spec, m.CapacityRequestSpec)
    assert spec.resources["cpu"] == "1Pi"
    assert spec.interruption_penalty == "8388608"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("resources", {"memory": "1125899906842624"}, id="1Pi-as-text"),
        pytest.param("resources", {"cpu": "-0"}, id="negative-zero"),
        pytest.param("resources", {"cpu": "1e-30"}, id="tiny"),
        pytest.param("interruptionPenalty", 10**9, id="int-penalty-at-bound"),
        pytest.param("reclamationPenalty", "1000000000000m", id="milli-penalty-at-bound"),
        pytest.param("interruptionPenalty", "8388609", id="pinned-penalty"),
        pytest.param(
            "requirements",
            [{"key": "zone", "operator": "In", "values": [""]}],
            id="empty-label-value",
        ),
    ],
)
async def test_values_at_the_bounds_are_accepted(
    api: kr8s.asyncio.Api, namespace: str, field: str, value: Any
) -> None:
    await CapacityRequest(
        _request("at-bound", namespace, _with(**{field: value})), api=api
    ).create()


async def test_a_capacity_request_without_spec_is_refused(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    manifest = _request("nospec", namespace, None)
    with pytest.raises(kr8s.ServerError) as caught:
        await CapacityRequest(manifest, api=api).create()
    assert "spec: Required value" in _error_text(caught.value)


async def test_unknown_status_phase_is_refused(api: kr8s.asyncio.Api, namespace: str) -> None:
    manifest = _request("phase", namespace, VALID_SPEC)
    request = CapacityRequest(manifest, api=api)
    await request.create()
    with pytest.raises(kr8s.ServerError) as caught:
        await request.patch({"status": {"phase": "Shortfall"}}, subresource="status")
    message = _error_text(caught.value)
    assert "status.phase" in message
    assert "Unsupported value" in message


@pytest.mark.parametrize(
    ("kind", "name", "spec", "field"),
    [
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"resources": {}, "taints": [{"key": "k", "effect": "Sometimes"}]},
            "spec.taints[0].effect",
            id="taint-effect",
        ),
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"labels": {}},
            "spec.resources",
            id="upcoming-without-resources",
        ),
        pytest.param(
            AvailableCapacity,
            "ac-bad",
            {"resources": {}, "availableCount": -1, "availability": "High", "cost": "1"},
            "spec.availableCount",
            id="negative-available-count",
        ),
        pytest.param(
            AvailableCapacity,
            "ac-bad",
            {"resources": {}, "availableCount": 1, "availability": "Plenty", "cost": "1"},
            "spec.availability",
            id="unknown-availability",
        ),
        pytest.param(
            Shard,
            "shard-bad",
            {"cycleIntervalSeconds": 0},
            "spec.cycleIntervalSeconds",
            id="zero-cycle-interval",
        ),
        pytest.param(Shard, "shard-bad", {"dryRun": "yes"}, "spec.dryRun", id="dry-run-not-bool"),
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"resources": {}, "labels": {"!!bad": "x"}},
            "spec.labels",
            id="node-label-key",
        ),
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"resources": {}, "labels": {"zone": "a" * 1000}},
            "spec.labels.zone",
            id="node-label-value-1000",
        ),
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"resources": {}, "labels": {f"k{i}": "v" for i in range(5000)}},
            "spec.labels",
            id="node-5000-labels",
        ),
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"resources": {}, "taints": [{"key": "bad key", "effect": "NoSchedule"}]},
            "spec.taints[0].key",
            id="taint-key",
        ),
        pytest.param(
            UpcomingNode,
            "un-bad",
            {"resources": {"cpu": "1e100"}},
            "spec.resources[cpu]",
            id="node-cpu-1e100",
        ),
        pytest.param(
            AvailableCapacity,
            "ac-bad",
            {
                "resources": {"!!bad name": "1"},
                "availableCount": 1,
                "availability": "High",
                "cost": "1",
            },
            "spec.resources",
            id="shape-resource-name",
        ),
        pytest.param(
            AvailableCapacity,
            "ac-bad",
            {"resources": {}, "availableCount": 1, "availability": "High", "cost": "1e30"},
            "spec.cost",
            id="cost-1e30",
        ),
    ],
)
async def test_bad_cluster_scoped_objects_are_refused(
    api: kr8s.asyncio.Api, kind: type[Shard], name: str, spec: dict[str, Any], field: str
) -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": kind.kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    with pytest.raises(kr8s.ServerError) as caught:
        await kind(manifest, api=api).create()
    assert field in _error_text(caught.value)


def test_kubectl_apply_reports_the_schema_error(
    control_plane: LocalControlPlane, namespace: str
) -> None:
    bad = f"""
apiVersion: {API_VERSION}
kind: CapacityRequest
metadata: {{name: from-kubectl, namespace: {namespace}}}
spec: {{priority: 1, resources: {{cpu: "-2"}}}}
"""
    result = control_plane.kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert result.returncode != 0
    assert 'CapacityRequest "from-kubectl" is invalid' in result.stderr
    assert "spec.resources[cpu]" in result.stderr
    assert "must be a non-negative quantity" in result.stderr
