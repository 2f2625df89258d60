"""Every roll-up field is validated at the shard's edge; a refusal names the field and value."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from prometheus_client import CollectorRegistry

from bigfleet import k8snames
from bigfleet.shard import codec
from bigfleet.shard.codec import InvalidRollup
from bigfleet.shard.runtime.channels import BadFrame, Channels
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.state import ShardState
from bigfleet.wire import capacity_pb2

Need = capacity_pb2.CapacityNeed
Req = capacity_pb2.NodeSelectorRequirement
Spread = capacity_pb2.TopologySpread


def good_need() -> Need:
    return Need(
        requirements=[
            Req(key="node.kubernetes.io/instance-type", operator=Req.OPERATOR_IN, values=["m5"]),
            Req(key="rack", operator=Req.OPERATOR_SAME),
        ],
        aggregate_resources={"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "2"},
        min_unit={"cpu": "8", "memory": "32Gi"},
        priority=100,
        spread=[
            Spread(
                topology_key="topology.kubernetes.io/zone",
                max_skew=1,
                when_unsatisfiable=Spread.WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE,
            )
        ],
        interruption_penalty_bucket=capacity_pb2.PENALTY_BUCKET_ZERO,
        group="gang-1",
    )


def rollup(*needs: Need, cluster: str = "cluster-a") -> capacity_pb2.ClusterCapacityNeeds:
    return capacity_pb2.ClusterCapacityNeeds(
        cluster_id=cluster, timestamp_unix_nanos=7, needs=needs
    )


def refused(message: capacity_pb2.ClusterCapacityNeeds, **kwargs: int) -> str:
    with pytest.raises(InvalidRollup) as caught:
        codec.rollup_from_wire(message, **kwargs)
    return str(caught.value)


def test_a_good_rollup_is_accepted() -> None:
    needs = codec.rollup_from_wire(rollup(good_need(), good_need()))
    assert len(needs) == 2
    assert needs[0].aggregate == {"cpu": 16000, "memory": 64 * 2**30 * 1000, "nvidia.com/gpu": 2000}
    assert needs[0].min_unit == {"cpu": 8000, "memory": 32 * 2**30 * 1000}


def _set(field: str, value: object) -> Callable[[Need], None]:
    def mutate(n: Need) -> None:
        setattr(n, field, value)

    return mutate


def _resource(field: str, name: str, text: str) -> Callable[[Need], None]:
    def mutate(n: Need) -> None:
        getattr(n, field)[name] = text

    return mutate


def _requirement(**changes: object) -> Callable[[Need], None]:
    def mutate(n: Need) -> None:
        for key, value in changes.items():
            if key == "values":
                del n.requirements[0].values[:]
                n.requirements[0].values.extend(value)  # type: ignore[arg-type]
            else:
                setattr(n.requirements[0], key, value)

    return mutate


def _spread(**changes: object) -> Callable[[Need], None]:
    def mutate(n: Need) -> None:
        for key, value in changes.items():
            setattr(n.spread[0], key, value)

    return mutate


LONG = "x" * 10_000_000


@pytest.mark.parametrize(
    ("mutate", "path", "shown"),
    [
        (
            _resource("aggregate_resources", "cpu", "-8"),
            "needs[1].aggregate_resources['cpu']",
            "-8",
        ),
        (_resource("aggregate_resources", "cpu", "1e100"), "aggregate_resources['cpu']", "1e100"),
        (_resource("aggregate_resources", "cpu", "1e999999"), "['cpu']", "1e999999"),
        (_resource("aggregate_resources", "memory", "1Ei"), "['memory']", "1Ei"),
        (_resource("aggregate_resources", "memory", "2E"), "['memory']", "2E"),
        (_resource("aggregate_resources", "memory", "8Ei"), "['memory']", "8Ei"),
        (_resource("aggregate_resources", "cpu", "eight"), "['cpu']", "eight"),
        (_resource("aggregate_resources", "cpu", " 8"), "['cpu']", " 8"),
        (_resource("aggregate_resources", "CPU cores", "1"), "aggregate_resources", "CPU cores"),
        (_resource("min_unit", "cpu", "0"), "needs[1].min_unit['cpu']", "0"),
        (_resource("min_unit", "cpu", "-1"), "min_unit['cpu']", "-1"),
        (_resource("min_unit", "cpu", "17"), "min_unit['cpu']", "17"),
        (_resource("min_unit", "cpu", "16001m"), "min_unit['cpu']", "16001m"),
        (_resource("min_unit", "pods", "1"), "min_unit['pods']", "pods"),
        (_resource("min_unit", "cpu", "1Ei"), "min_unit['cpu']", "1Ei"),
        (_set("interruption_penalty_bucket", 28), "interruption_penalty_bucket", "28"),
        (_set("reclamation_penalty_bucket", -1), "reclamation_penalty_bucket", "-1"),
        (_set("group", "g" * 1025), "needs[1].group", "ggg"),
        (_set("group", LONG), "needs[1].group", "10000000 characters"),
        (_set("group", "é" * 513), "needs[1].group", "1024 bytes"),
        (_requirement(key=""), "requirements[0].key", "''"),
        (_requirement(key="has space"), "requirements[0].key", "has space"),
        (_requirement(key="Example.com/x"), "requirements[0].key", "Example.com/x"),
        (_requirement(key="a/b/c"), "requirements[0].key", "a/b/c"),
        (_requirement(key="k" * 64), "requirements[0].key", "63"),
        (_requirement(key=LONG), "requirements[0].key", "10000000 characters"),
        (_requirement(operator=0), "requirements[0].operator", "0"),
        (_requirement(operator=42), "requirements[0].operator", "42"),
        (_requirement(values=["ok", "-bad"]), "requirements[0].values[1]", "-bad"),
        (_requirement(values=["v" * 64]), "requirements[0].values[0]", "63"),
        (_spread(max_skew=0), "spread[0].max_skew", "0"),
        (_spread(max_skew=-3), "spread[0].max_skew", "-3"),
        (_spread(topology_key=""), "spread[0].topology_key", "''"),
        (_spread(topology_key="zone!"), "spread[0].topology_key", "zone!"),
        (_spread(when_unsatisfiable=9), "spread[0].when_unsatisfiable", "9"),
    ],
)
def test_each_bad_field_refuses_the_rollup_naming_field_and_value(
    mutate: Callable[[Need], None], path: str, shown: str
) -> None:
    bad = good_need()
    mutate(bad)
    message = refused(rollup(good_need(), bad))
    assert path in message
    assert shown in message
    assert len(message) < 400  # a 10 MB value is never echoed


@pytest.mark.parametrize(
    ("cluster", "shown"),
    [
        ("", "cluster_id"),
        ("Cluster-A", "Cluster-A"),
        ("cluster_a", "cluster_a"),
        ("-a", "-a"),
        ("a" * 254, "253"),
        ("a..b", "a..b"),
    ],
)
def test_the_cluster_id_is_a_dns1123_subdomain(cluster: str, shown: str) -> None:
    message = refused(rollup(good_need(), cluster=cluster))
    assert message.startswith("cluster_id")
    assert shown in message


def test_edges_that_are_accepted() -> None:
    n = good_need()
    n.priority = -(2**31)
    n.min_unit["cpu"] = "16"  # equal to the aggregate
    n.aggregate_resources["ephemeral-storage"] = "0"  # zero is a quantity
    n.group = "g" * 1024
    n.requirements[0].key = "a" * 253 + "/" + "b" * 63
    del n.requirements[0].values[:]
    n.requirements[0].values.extend(["v" * 63, "", "A-b_c.9"])
    n.spread[0].max_skew = 2**31 - 1
    n.spread[0].when_unsatisfiable = Spread.WHEN_UNSATISFIABLE_UNSPECIFIED
    n.interruption_penalty_bucket = 27  # type: ignore[assignment]
    cluster = ".".join(["a" * 63] * 4)[:253].rstrip(".")
    (need,) = codec.rollup_from_wire(rollup(n, cluster=cluster))
    assert need.priority == -(2**31)
    assert need.profile.spread[0].when_unsatisfiable == "ScheduleAnyway"
    assert need.aggregate["ephemeral-storage"] == 0


def test_the_needs_cap_is_a_parameter_with_a_default() -> None:
    assert codec.MAX_NEEDS_PER_ROLLUP == 50_000
    three = rollup(good_need(), good_need(), good_need())
    assert len(codec.rollup_from_wire(three, max_needs=3)) == 3
    message = refused(three, max_needs=2)
    assert message.startswith("needs:") and "3" in message and "2" in message


def test_name_rules_live_in_the_kernel() -> None:
    assert k8snames.is_label_key("bigfleet.lucy.sh/capacity-type")
    assert k8snames.is_label_key("rack")
    assert not k8snames.is_label_key("/rack")
    assert not k8snames.is_label_key("rack/")
    assert k8snames.is_label_value("")
    assert not k8snames.is_label_value("a-")
    assert k8snames.is_dns1123_subdomain("c1.example")
    assert not k8snames.is_dns1123_subdomain("C1")


@pytest.mark.parametrize("text", ["-8", "1Ei", "1e999999", "2E", "x"])
def test_the_shard_turns_a_refusal_into_invalid_argument(text: str) -> None:
    metrics = ShardMetrics(CollectorRegistry())
    state = ShardState("s", 1, metrics, Channels(metrics, 64))
    before = len(state.table.snapshot())
    n = good_need()
    n.aggregate_resources["cpu"] = text
    with pytest.raises(BadFrame) as caught:
        state.apply_rollup(rollup(n))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "aggregate_resources['cpu']" in str(caught.value)
    assert len(state.table.snapshot()) == before
    assert metrics.rollups_rejected.labels("cluster-a")._value.get() == 1


def test_only_names_short_enough_to_be_valid_are_remembered() -> None:
    """The validity of label keys and values is cached; what a hostile roll-up sends in
    long strings is checked every time and never held."""
    n = good_need()
    n.requirements[0].key = "k" * 100_000
    before = k8snames._remembered_key_error.cache_info().currsize
    assert "not a valid label key" in refused(rollup(n))
    assert k8snames._remembered_key_error.cache_info().currsize == before
    codec.rollup_from_wire(rollup(good_need()))
    hits = k8snames._remembered_key_error.cache_info().hits
    assert k8snames.label_key_error("cpu") is None  # a short, valid name: remembered
    assert k8snames._remembered_key_error.cache_info().hits == hits + 1
