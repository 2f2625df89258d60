"""Aggregation of repeated Events: which writes bump an existing Event and which make a new
one, and that memory of them stays bounded."""

from __future__ import annotations

import pytest

from bigfleet import capacity_events
from bigfleet.operators.operator.capacity_requests import RequestCache
from bigfleet.operators.podcontroller.events import owner_pod
from bigfleet.recorder import Involved, Key, RecentEvents

REQUEST = Involved(
    api_version="bigfleet.lucy.sh/v1alpha1",
    kind="CapacityRequest",
    name="trainer",
    namespace="ml",
    uid="u-1",
)


def key(message: str = "no machine fits", reason: str = "NoMatchingSupply") -> Key:
    return (REQUEST, "Warning", reason, message)


def test_a_repeat_within_the_window_bumps_the_event_already_written() -> None:
    recent = RecentEvents(window_s=600)
    assert recent.repeat(key(), now=0.0) is None  # never written: a new Event
    recent.wrote(key(), "ml", "trainer.abc", now=0.0)
    bumped = recent.repeat(key(), now=10.0)
    assert bumped is not None
    assert (bumped.name, bumped.namespace, bumped.count) == ("trainer.abc", "ml", 2)
    again = recent.repeat(key(), now=20.0)
    assert again is not None and again.count == 3


def test_the_window_counts_from_the_last_time_it_was_said() -> None:
    recent = RecentEvents(window_s=600)
    recent.wrote(key(), "ml", "trainer.abc", now=0.0)
    assert recent.repeat(key(), now=500.0) is not None
    assert recent.repeat(key(), now=1000.0) is not None  # 500 s after the last bump
    assert recent.repeat(key(), now=1601.0) is None  # past the window: written anew
    assert len(recent) == 0


def test_a_different_message_reason_type_or_object_is_a_different_event() -> None:
    recent = RecentEvents()
    recent.wrote(key(), "ml", "trainer.abc", now=0.0)
    assert recent.repeat(key(message="other words"), now=1.0) is None
    assert recent.repeat(key(reason="PriorityStarved"), now=1.0) is None
    assert recent.repeat((REQUEST, "Normal", "NoMatchingSupply", "no machine fits"), 1.0) is None
    recreated = Involved(
        api_version=REQUEST.api_version,
        kind=REQUEST.kind,
        name=REQUEST.name,
        namespace=REQUEST.namespace,
        uid="u-2",
    )
    assert recent.repeat((recreated, "Warning", "NoMatchingSupply", "no machine fits"), 1.0) is None


def test_memory_keeps_only_the_most_recently_used_keys() -> None:
    recent = RecentEvents(capacity=2)
    recent.wrote(key("a"), "ml", "e-a", now=0.0)
    recent.wrote(key("b"), "ml", "e-b", now=0.0)
    assert recent.repeat(key("a"), now=1.0) is not None  # "a" is now the most recent
    recent.wrote(key("c"), "ml", "e-c", now=2.0)  # pushes out "b", the least recent
    assert len(recent) == 2
    assert recent.repeat(key("b"), now=3.0) is None
    assert recent.repeat(key("a"), now=3.0) is not None
    assert recent.repeat(key("c"), now=3.0) is not None


def test_a_forgotten_event_is_written_anew() -> None:
    recent = RecentEvents()
    recent.wrote(key(), "ml", "trainer.abc", now=0.0)
    recent.forget(key())
    assert recent.repeat(key(), now=1.0) is None


def test_memory_must_hold_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentEvents(capacity=0)


def test_the_reference_names_the_object_with_its_uid_and_no_empty_namespace() -> None:
    assert REQUEST.reference() == {
        "apiVersion": "bigfleet.lucy.sh/v1alpha1",
        "kind": "CapacityRequest",
        "name": "trainer",
        "namespace": "ml",
        "uid": "u-1",
    }
    node = Involved(api_version="v1", kind="Node", name="n-1", uid="u-9")
    assert node.reference() == {"apiVersion": "v1", "kind": "Node", "name": "n-1", "uid": "u-9"}


def test_the_request_cache_knows_the_uid_of_requests_it_watched() -> None:
    cache = RequestCache()
    cache.apply("ADDED", {"metadata": {"name": "trainer", "namespace": "ml", "uid": "u-1"}})
    unknown = Involved(api_version=REQUEST.api_version, kind=REQUEST.kind, name="x", namespace="ml")
    asked = Involved(
        api_version=REQUEST.api_version, kind=REQUEST.kind, name="trainer", namespace="ml"
    )
    assert cache.uid(asked) == "u-1"
    assert cache.uid(unknown) is None
    assert cache.uid(Involved(api_version="v1", kind="Pod", name="trainer", namespace="ml")) is None


def test_node_coming_names_the_machine_and_its_rack_when_known() -> None:
    assert capacity_events.rack_of({"rack": "r1"}) == "r1"
    assert capacity_events.rack_of({"topology.kubernetes.io/rack": "r2", "rack": "r1"}) == "r2"
    assert capacity_events.rack_of({"zone": "a"}) == ""
    assert capacity_events.node_coming("m-7", "r1", "this request") == (
        "machine m-7 in rack r1, which fits this request, is joining the cluster"
    )
    assert capacity_events.node_coming("m-7", "", "this request") == (
        "machine m-7, which fits this request, is joining the cluster"
    )


def test_only_requests_the_pod_controller_raised_lead_to_a_pod() -> None:
    raised = {
        "metadata": {
            "name": "cr-pod-web-1234abcd",
            "namespace": "ml",
            "labels": {"bigfleet.lucy.sh/owned-by-pod": "pod-uid"},
            "ownerReferences": [{"kind": "Pod", "name": "web", "uid": "pod-uid"}],
        }
    }
    pod = owner_pod(raised)
    assert pod is not None
    assert (pod.kind, pod.name, pod.namespace, pod.uid) == ("Pod", "web", "ml", "pod-uid")
    by_hand = {"metadata": {"name": "trainer", "namespace": "ml"}}
    assert owner_pod(by_hand) is None
    other_owner = {
        "metadata": {
            "name": "x",
            "namespace": "ml",
            "labels": {"bigfleet.lucy.sh/owned-by-pod": "pod-uid"},
            "ownerReferences": [{"kind": "Pod", "name": "web", "uid": "someone-else"}],
        }
    }
    assert owner_pod(other_owner) is None
