"""Which Pod a CapacityRequest's Events are relayed to."""

from __future__ import annotations

from bigfleet.operators.podcontroller.events import owner_pod


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
