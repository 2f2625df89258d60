"""The API server itself refuses malformed BigFleet objects, naming the offending field."""

from __future__ import annotations

import copy
from typing import Any

import kr8s
import kr8s.asyncio
import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION, AvailableCapacity, CapacityRequest, Shard, UpcomingNode

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
]


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
