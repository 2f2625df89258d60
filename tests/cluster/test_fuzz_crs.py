"""Random CapacityRequests, valid and adversarial, through the real API server's validation.

Each is created with `dryRun=All` (nothing is stored). Whatever the API server
accepts must decode through `bigfleet.crd.models`: the schema never admits what
the operator's models refuse. And whatever it refuses the models refuse too, so
the two stay in step in both directions.
"""

from __future__ import annotations

import ssl
import string
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import API_VERSION
from bigfleet.crd import models as m

_NAME = st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,10}[a-z0-9])?", fullmatch=True)
_PREFIX = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True)
_VALID_KEY = st.one_of(
    st.sampled_from(["zone", "kubernetes.io/hostname", "topology.kubernetes.io/zone", "A_b.C-9"]),
    _NAME,
    st.builds(lambda p, n: f"{p}/{n}", _PREFIX, _NAME),
)
_ODD_TEXT = st.text(string.ascii_letters + string.digits + "-_./!@ :", max_size=12)
_BAD_KEY = st.one_of(
    st.sampled_from(
        [
            "",
            "!!bad name",
            "-zone",
            "zone-",
            "a/b/c",
            "/zone",
            "zone/",
            "Example.com/zone",
            "x" * 64,
            f"{'a' * 254}/x",
            f"{'a' * 253}/{'b' * 63}",  # the longest legal key
        ]
    ),
    _ODD_TEXT,
)
_KEY = st.one_of(_VALID_KEY, _VALID_KEY, _BAD_KEY)
_VALUE = st.one_of(
    st.just(""),
    _NAME,
    st.sampled_from(["a" * 63, "a" * 64, "a" * 1000, "zone a", "-a", "a_", "é"]),
    _ODD_TEXT,
)
_RESOURCE_NAME = st.one_of(
    st.sampled_from(
        ["cpu", "memory", "nvidia.com/gpu", "hugepages-2Mi", "ephemeral-storage", "example.com/x"]
    ),
    _BAD_KEY,
)
_QUANTITY_TEXT = st.one_of(
    st.builds(
        lambda n, u: f"{n}{u}",
        st.integers(0, 5000),
        st.sampled_from(["", "m", "k", "Ki", "Mi", "Gi", "Pi", "E", "Ei", "n", "e3", "e-2"]),
    ),
    st.sampled_from(
        [
            "1e100",
            "1e30",
            "-1",
            "-0",
            "+1",
            "1.",
            ".5",
            "1e-30",
            "1Pi",
            "1125899906842624",
            "1125899906842625",
            "8388608",
            "8388609",
            "8Mi",
            "1ki",
            " 1",
            "1e1.5",
            "0x10",
            "Ki",
            "-",
            "1E",
            "2E3",
            "1e999",
            "1e1000",
            "lots",
            "",
            "1" * 65,
        ]
    ),
    _ODD_TEXT,
)
_QUANTITY = st.one_of(
    _QUANTITY_TEXT,
    _QUANTITY_TEXT,
    st.integers(-10, 2**23 + 10),
    st.sampled_from([2**50, 2**50 + 1, -(2**31), 2**62]),
)
_OPERATOR = st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Same", "Gt"])


@st.composite
def _requirement(draw: st.DrawFn) -> dict[str, Any]:
    requirement: dict[str, Any] = {"key": draw(_KEY), "operator": draw(_OPERATOR)}
    values = draw(st.none() | st.lists(_VALUE, max_size=3))
    if values is not None:
        requirement["values"] = values
    return requirement


def _maybe_many(element: st.SearchStrategy[Any], limit: int) -> st.SearchStrategy[list[Any]]:
    """Mostly a few elements; sometimes exactly `limit` or one more."""
    return st.one_of(
        st.lists(element, max_size=3),
        st.lists(element, max_size=3),
        element.flatmap(lambda e: st.sampled_from([[e] * limit, [e] * (limit + 1)])),
    )


_spread = st.fixed_dictionaries(
    {
        "topologyKey": _KEY,
        "maxSkew": st.integers(-1, 2**31),
        "whenUnsatisfiable": st.sampled_from(["DoNotSchedule", "ScheduleAnyway", "Maybe"]),
    }
)
_selector = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.one_of(
            st.dictionaries(_KEY, _VALUE, max_size=3),
            st.integers(64, 66).map(lambda n: {f"k{i}": "v" for i in range(n)}),
        ),
        "matchExpressions": st.lists(_requirement(), max_size=2),
    },
)
_co_location = st.fixed_dictionaries({"topologyKey": _KEY}, optional={"labelSelector": _selector})


def _resources() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.dictionaries(_RESOURCE_NAME, _QUANTITY, max_size=4),
        st.integers(64, 65).map(lambda n: {f"example.com/r{i}": "1" for i in range(n)}),
    )


_spec = st.fixed_dictionaries(
    {
        "resources": _resources(),
        "priority": st.one_of(
            st.integers(-(2**31), 2**31 - 1), st.sampled_from([2**31, -(2**31) - 1])
        ),
    },
    optional={
        "requirements": _maybe_many(_requirement(), m.MAX_REQUIREMENTS),
        "topologySpread": _maybe_many(_spread, m.MAX_SPREAD),
        "coLocation": _co_location,
        "interruptionPenalty": _QUANTITY,
        "reclamationPenalty": _QUANTITY,
    },
)


@pytest.fixture(scope="module")
def client(control_plane: LocalControlPlane) -> Iterator[httpx.Client]:
    pki = control_plane.pki
    tls = ssl.create_default_context(cafile=str(pki.ca_cert))
    tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    with httpx.Client(base_url=control_plane.apiserver_url, verify=tls, timeout=30.0) as session:
        yield session


def _dry_run_create(client: httpx.Client, spec: dict[str, Any]) -> httpx.Response:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "CapacityRequest",
        "metadata": {"name": "fuzz", "namespace": "default"},
        "spec": spec,
    }
    return client.post(
        f"/apis/{API_VERSION}/namespaces/default/capacityrequests",
        params={"dryRun": "All"},
        json=manifest,
    )


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=_spec)
def test_what_the_api_server_accepts_the_models_decode(
    client: httpx.Client, spec: dict[str, Any]
) -> None:
    response = _dry_run_create(client, spec)
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        stored = response.json()["spec"]
        m.CapacityRequestSpec.from_object(stored)  # must not raise
    else:
        assert response.json()["reason"] == "Invalid"
        with pytest.raises(ValidationError):
            m.CapacityRequestSpec.from_object(spec)


def test_the_fuzz_baseline_is_accepted(client: httpx.Client) -> None:
    # Guards the generator: a plainly valid spec goes through, so refusals mean something.
    spec = {
        "resources": {"cpu": "2", "nvidia.com/gpu": 1},
        "priority": 0,
        "requirements": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}],
    }
    response = _dry_run_create(client, spec)
    assert response.status_code == 201, response.text
