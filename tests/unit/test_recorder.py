"""Aggregation of repeated Events: which writes bump an existing Event and which make a new
one, and that memory of them stays bounded."""

from __future__ import annotations

import pytest

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
    unsent = recent.repeat(key(), now=15.0)  # the bump above never reached the server
    assert unsent is not None and unsent.count == 2
    recent.bumped(key(), unsent)
    again = recent.repeat(key(), now=20.0)
    assert again is not None and again.count == 3


def test_the_window_counts_from_the_last_time_it_was_said() -> None:
    recent = RecentEvents(window_s=600)
    recent.wrote(key(), "ml", "trainer.abc", now=0.0)
    for now in (500.0, 1000.0):  # each 500 s after the last bump the server took
        bump = recent.repeat(key(), now=now)
        assert bump is not None
        recent.bumped(key(), bump)
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
