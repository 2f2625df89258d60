"""The operator's cache of CapacityRequests, as the Event recorder asks it for uids."""

from __future__ import annotations

from bigfleet.crd import API_VERSION
from bigfleet.operators.operator.capacity_requests import RequestCache
from bigfleet.recorder import Involved


def test_the_request_cache_knows_the_uid_of_requests_it_watched() -> None:
    cache = RequestCache()
    cache.apply("ADDED", {"metadata": {"name": "trainer", "namespace": "ml", "uid": "u-1"}})
    unknown = Involved(api_version=API_VERSION, kind="CapacityRequest", name="x", namespace="ml")
    asked = Involved(
        api_version=API_VERSION, kind="CapacityRequest", name="trainer", namespace="ml"
    )
    assert cache.uid(asked) == "u-1"
    assert cache.uid(unknown) is None
    assert cache.uid(Involved(api_version="v1", kind="Pod", name="trainer", namespace="ml")) is None
