"""The chain bench's count of API server requests per Pod, from the server's /metrics."""

from __future__ import annotations

from bigfleet.bench.chain import per_pod, request_counts

METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",resource="capacityrequests",subresource="",verb="POST"} 1000
apiserver_request_total{code="409",resource="capacityrequests",subresource="",verb="POST"} 4
apiserver_request_total{code="200",group="",resource="pods",subresource="binding",verb="POST"} 990
apiserver_request_total{code="200",group="",resource="pods",subresource="",verb="WATCH"} 12
# HELP apiserver_request_duration_seconds Response latency.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{resource="pods",verb="POST"} 990
"""


def test_requests_are_counted_by_verb_and_resource_without_watches() -> None:
    assert request_counts(METRICS) == {
        "POST capacityrequests": 1004.0,
        "POST pods/binding": 990.0,
    }


def test_per_pod_is_the_difference_over_the_pods_busiest_first() -> None:
    before = {"POST capacityrequests": 4.0, "GET leases": 10.0}
    after = {"POST capacityrequests": 1004.0, "POST pods/binding": 990.0, "GET leases": 13.0}
    assert per_pod(before, after, 1000) == {
        "total": 1.99,
        "POST capacityrequests": 1.0,
        "POST pods/binding": 0.99,
    }
