"""Which requests a frame concerns, told once each."""

from __future__ import annotations

from typing import Any

from bigfleet.operators.operator.explain import Explainer, matches_labels
from bigfleet.operators.operator.rollup import translate
from bigfleet.wire import shard_pb2


def cr(name: str, *requirements: dict[str, Any]) -> Any:
    return translate(
        {
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"resources": {"cpu": "1"}, "priority": 1, "requirements": list(requirements)},
        }
    )


ZONE_A = {"key": "zone", "operator": "In", "values": ["a"]}
NO_GPU = {"key": "gpu", "operator": "DoesNotExist"}


def test_label_matching_follows_the_operators() -> None:
    request = cr("r", ZONE_A, NO_GPU)
    assert matches_labels(request, {"zone": "a"})
    assert not matches_labels(request, {"zone": "b"})
    assert not matches_labels(request, {"zone": "a", "gpu": "1"})


def test_a_joining_node_is_announced_once_to_the_requests_it_fits() -> None:
    explainer = Explainer()
    fits, other = (
        cr("fits", ZONE_A),
        cr("other", {"key": "zone", "operator": "In", "values": ["b"]}),
    )
    told = explainer.node_coming([fits, other], {"zone": "a"})
    assert [t.name for t in told] == ["fits"]
    assert explainer.node_coming([fits, other], {"zone": "a"}) == []
    # Told once, not once per machine: a burst brings many that fit.
    assert explainer.node_coming([fits, other], {"zone": "a", "rack": "r2"}) == []


def test_what_was_told_is_forgotten_with_the_request() -> None:
    explainer = Explainer()
    gone, stays = cr("gone", ZONE_A), cr("stays", ZONE_A)
    assert len(explainer.node_coming([gone, stays], {"zone": "a"})) == 2
    explainer.keep([stays])  # the next roll-up no longer has "gone"
    assert len(explainer) == 1
    # A request of the same name made again is new: it is told again.
    assert [t.name for t in explainer.node_coming([gone], {"zone": "a"})] == ["gone"]


def test_a_hint_with_no_supply_makes_requests_of_its_shape_wait() -> None:
    explainer = Explainer()
    hint = shard_pb2.AvailableCapacityUpdate(available_count=0)
    hint.requirements.add(key="zone", operator=1, values=["a"])
    waiting = explainer.waiting([cr("same", ZONE_A), cr("different", NO_GPU)], hint)
    assert [t.name for t in waiting] == ["same"]
