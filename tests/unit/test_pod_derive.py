"""A pod's CapacityRequest: the scheduler's view of its requests, placement and value."""

from __future__ import annotations

from typing import Any

from bigfleet.operators.podcontroller.derive import (
    DEFAULT_PENALTIES,
    capacity_request_spec,
    resources,
    terminal,
    unschedulable,
)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": spec.pop("ann", {})},
        "spec": {"containers": [], **spec},
    }


def container(cpu: str, memory: str = "0", **extra: Any) -> dict[str, Any]:
    return {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}, **extra}


def test_requests_follow_the_scheduler_arithmetic() -> None:
    spec = {
        "containers": [container("1", "1Gi"), container("500m", "1Gi")],
        "initContainers": [container("3"), container("250m", "512Mi", restartPolicy="Always")],
        "overhead": {"cpu": "100m"},
    }
    # max(app 1.5 + sidecar 0.25, init peak 3) + overhead 0.1 CPU; memory 2Gi + 512Mi sidecar
    assert resources(spec) == {"cpu": "3100m", "memory": str(2 * 2**30 + 512 * 2**20)}


def test_requirements_come_from_the_first_affinity_term_and_the_node_selector() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "zone", "operator": "In", "values": ["b", "a"]},
                            {"key": "gen", "operator": "Gt", "values": ["3"]},
                        ]
                    },
                    {"matchExpressions": [{"key": "other", "operator": "Exists"}]},
                ]
            }
        }
    }
    spec = capacity_request_spec(
        pod(affinity=affinity, nodeSelector={"disk": "ssd"}), {}
    ).to_object()
    assert spec["requirements"] == [
        {"key": "zone", "operator": "In", "values": ["a", "b"]},
        {"key": "disk", "operator": "In", "values": ["ssd"]},
    ]
    bare = capacity_request_spec(pod(), {}).to_object()
    assert bare["requirements"] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "Exists"}
    ]


def test_penalties_annotation_then_priority_class_then_defaults() -> None:
    defaults = {"ml": {"interruptionPenalty": "8192", "reclamationPenalty": "65536"}}
    annotated = pod(
        priorityClassName="ml",
        ann={
            "bigfleet.lucy.sh/interruption-penalty": "3",
            "bigfleet.lucy.sh/reclamation-penalty": "not-money",
        },
    )
    spec = capacity_request_spec(annotated, defaults).to_object()
    assert (spec["interruptionPenalty"], spec["reclamationPenalty"]) == ("3", "65536")
    plain = capacity_request_spec(pod(), defaults).to_object()
    assert plain["interruptionPenalty"] == DEFAULT_PENALTIES["interruptionPenalty"]


def test_spread_co_location_and_priority_carry_over() -> None:
    spec = capacity_request_spec(
        pod(
            priority=700,
            topologySpreadConstraints=[
                {"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"},
                {"topologyKey": "host", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"},
            ],
            affinity={
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "rack", "labelSelector": {"matchLabels": {"job": "t"}}}
                    ]
                }
            },
        ),
        {},
    ).to_object()
    assert spec["priority"] == 700
    assert spec["topologySpread"] == [
        {"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}
    ]
    assert spec["coLocation"] == {
        "topologyKey": "rack",
        "labelSelector": {"matchLabels": {"job": "t"}},
    }


def test_only_the_schedulers_unschedulable_verdict_counts() -> None:
    def with_condition(**condition: str) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": "PodScheduled", **condition}]}}

    assert unschedulable(with_condition(status="False", reason="Unschedulable"))
    assert not unschedulable(with_condition(status="False", reason="SchedulingGated"))
    assert not unschedulable({"status": {}})


def test_a_pod_being_deleted_needs_no_capacity_like_one_that_ended() -> None:
    running = {**pod(), "status": {"phase": "Running"}}
    assert not terminal(running)
    assert terminal({**running, "status": {"phase": "Succeeded"}})
    assert terminal({**running, "status": {"phase": "Failed"}})
    deleting = {
        **running,
        "metadata": {**running["metadata"], "deletionTimestamp": "2026-12-07T04:00:00Z"},
    }
    assert terminal(deleting)
