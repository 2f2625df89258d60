"""The operator's roll-up: CRs translated, bucketed and folded as the shard expects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bigfleet import penalty
from bigfleet.operators.operator.rollup import Memo, build, translate
from bigfleet.shard import codec
from bigfleet.wire import capacity_pb2

Req = capacity_pb2.NodeSelectorRequirement


def cr(name: str, cpu: str = "1", priority: int = 10, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"resources": {"cpu": cpu}, "priority": priority, **spec},
    }


def test_equal_profiles_fold_summing_requests_and_maxing_the_unit() -> None:
    rollup = build("c1", [cr("a", "1"), cr("b", "3"), cr("c", "500m")], now_ns=7)
    (need,) = rollup.message.needs
    assert dict(need.aggregate_resources) == {"cpu": "4500m"}
    assert dict(need.min_unit) == {"cpu": "3"}
    assert rollup.message.cluster_id == "c1" and rollup.message.timestamp_unix_nanos == 7
    assert len(rollup.pending) == 3


def test_a_zero_request_asks_for_nothing_and_the_shard_takes_the_roll_up() -> None:
    # Kubernetes admits `nvidia.com/gpu: "0"`; a need's unit of 0 would get the whole
    # roll-up refused by the shard.
    zero_gpu = cr("a", "2", resources={"cpu": "2", "nvidia.com/gpu": "0", "memory": "0m"})
    rollup = build("c1", [zero_gpu, cr("b", "1")], now_ns=0)
    (need,) = rollup.message.needs
    assert dict(need.aggregate_resources) == {"cpu": "3"}
    assert dict(need.min_unit) == {"cpu": "2"}
    assert len(codec.rollup_from_wire(rollup.message)) == 1


def test_the_memo_decodes_a_request_again_only_when_its_object_is_replaced() -> None:
    memo = Memo()
    a, b = cr("a", "1"), cr("b", "2")
    assert dict(build("c1", [a, b], 0, memo).message.needs[0].aggregate_resources) == {"cpu": "3"}
    # The request cache never edits an object in place; an edit here proves the memo
    # answered from last time instead of decoding again.
    a["spec"]["resources"]["cpu"] = "100"
    assert dict(build("c1", [a, b], 0, memo).message.needs[0].aggregate_resources) == {"cpu": "3"}
    replaced = cr("a", "5")  # what a watch event brings: a new object
    needs = build("c1", [replaced, b], 0, memo).message.needs
    assert dict(needs[0].aggregate_resources) == {"cpu": "7"}
    assert build("c1", [b], 0, memo).translated[0].name == "b"  # a deleted request is gone


def test_a_problem_is_remembered_like_a_translation() -> None:
    memo = Memo()
    bad = cr("bad", requirements=[{"key": "k", "operator": "Gt", "values": ["1"]}])
    first = build("c1", [bad, cr("ok")], 0, memo)
    again = build("c1", [bad, cr("ok")], 0, memo)
    assert (
        first.problems
        == again.problems
        == [("ns", "bad", "requirement operator 'Gt' is not supported")]
    )
    assert len(again.message.needs) == 1


def test_priority_penalty_bucket_and_requirements_split_needs() -> None:
    rollup = build(
        "c1",
        [
            cr("a"),
            cr("b", priority=11),
            cr("c", interruptionPenalty="500m"),
            cr("d", requirements=[{"key": "zone", "operator": "In", "values": ["b", "a"]}]),
            cr("e", requirements=[{"key": "zone", "operator": "In", "values": ["a", "b"]}]),
        ],
        now_ns=0,
    )
    assert len(rollup.message.needs) == 4  # d and e fold: values are canonicalised


def test_penalties_bucket_as_floats() -> None:
    t = translate(cr("a", interruptionPenalty="500m", reclamationPenalty=8000))
    assert t.interruption_bucket == penalty.HALF_DOLLAR
    assert t.reclamation_bucket == penalty.bucket_for_dollars(8192)
    assert translate(cr("b")).interruption_bucket == penalty.UNSPECIFIED


def test_co_location_becomes_a_gang_and_a_same_requirement() -> None:
    gang = {"topologyKey": "rack", "labelSelector": {"matchLabels": {"job": "train"}}}
    rollup = build(
        "c1",
        [
            cr("a", coLocation=gang),
            cr("b", coLocation=gang),
            cr("c", coLocation={**gang, "labelSelector": {"matchLabels": {"job": "other"}}}),
        ],
        now_ns=0,
    )
    needs = sorted(rollup.message.needs, key=lambda n: n.aggregate_resources["cpu"])
    assert [dict(n.aggregate_resources) for n in needs] == [{"cpu": "1"}, {"cpu": "2"}]
    assert needs[0].group != needs[1].group and all(n.group for n in needs)
    for need in needs:
        assert [(r.key, r.operator) for r in need.requirements] == [("rack", Req.OPERATOR_SAME)]


def test_schedule_anyway_spread_is_dropped_and_do_not_schedule_kept() -> None:
    spread = [
        {"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"},
        {"topologyKey": "rack", "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"},
    ]
    (need,) = build("c1", [cr("a", topologySpread=spread)], now_ns=0).message.needs
    assert [(s.topology_key, s.max_skew) for s in need.spread] == [("rack", 2)]


def test_untranslatable_crs_are_reported_and_the_rest_still_goes() -> None:
    bad = cr("bad", requirements=[{"key": "zone", "operator": "Gt", "values": ["1"]}])
    rollup = build("c1", [bad, cr("good")], now_ns=0)
    assert len(rollup.message.needs) == 1
    assert rollup.problems == [("ns", "bad", "requirement operator 'Gt' is not supported")]


def test_a_malformed_resource_name_is_untranslatable() -> None:
    rollup = build("c1", [cr("odd", **{"resources": {"CPU cores": "1"}})], now_ns=0)
    ((namespace, name, why),) = rollup.problems
    assert (namespace, name) == ("ns", "odd")
    assert why.startswith("spec.resources.CPU cores: 'CPU cores' is not a resource name")
    assert build("c1", [cr("ok", **{"resources": {"nvidia.com/gpu": "1"}})], 0).problems == []


def test_acknowledged_crs_still_count_but_are_not_pending() -> None:
    done = cr("done")
    done["status"] = {"phase": "Acknowledged"}
    rollup = build("c1", [done, cr("new")], now_ns=0)
    assert [t.name for t in rollup.pending] == ["new"]
    assert dict(rollup.message.needs[0].aggregate_resources) == {"cpu": "2"}


def test_an_empty_cluster_sends_an_empty_rollup() -> None:
    rollup = build("c1", [], now_ns=0)
    assert list(rollup.message.needs) == [] and rollup.message.cluster_id == "c1"


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 4000),
            st.sampled_from([1, 2, 3]),
            st.sampled_from([None, "1", "500m", "9000"]),
        ),
        max_size=30,
    )
)
def test_what_the_operator_sends_the_shard_accepts_and_totals_are_kept(
    rows: list[tuple[int, int, str | None]],
) -> None:
    crs = [
        cr(f"cr-{i}", f"{m}m", p, **({"interruptionPenalty": pen} if pen else {}))
        for i, (m, p, pen) in enumerate(rows)
    ]
    message = build("c1", crs, now_ns=1).message
    needs = codec.rollup_from_wire(
        capacity_pb2.ClusterCapacityNeeds.FromString(message.SerializeToString())
    )
    assert sum(n.aggregate.get("cpu", 0) for n in needs) == sum(m for m, _, _ in rows)
    assert len(needs) == len({(p, pen) for _, p, pen in rows})
