"""The words both operators' capacity Events share."""

from __future__ import annotations

from bigfleet import capacity_events


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
