"""`bigfleet explain` and `bigfleet ctl inspect-needs` over real gRPC.

A small stand-in for the shard's read service serves canned NeedViews on
127.0.0.1 (paging the BigFleet way: a token in the header, the request's
`limit` as page size), so every reason, page shape and refusal the client must
handle is tested over real sockets, real TLS and real status codes. The
request-to-need matching (`find_view`) is tested on CR dicts here; `explain
capacityrequest` end to end runs at the cluster tier, against the real API
server and the real shard (tests/cluster/test_satisfied_condition.py).
"""

from __future__ import annotations

import importlib
import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from click.testing import CliRunner, Result

from bigfleet.cli import main
from bigfleet.operators.operator.rollup import build
from bigfleet.tls import Credentials, Role, peer_identity
from bigfleet.wire import capacity_pb2, provider_pb2, shardread_pb2, shardread_pb2_grpc
from tests.support import identities

# The module itself: `bigfleet.cli.explain` as an attribute is the click group.
cli_explain = importlib.import_module("bigfleet.cli.explain")
R = shardread_pb2.UnmetReason
CYCLE = 7
COMPUTED_AT = 1_780_000_000_000_000_000


def cr(name: str, cpu: str = "4", *, zone: str = "a", priority: int = 100, **spec: Any) -> Any:
    return {
        "apiVersion": "bigfleet.lucy.sh/v1alpha1",
        "kind": "CapacityRequest",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "priority": priority,
            "resources": {"cpu": cpu, "memory": "16Gi"},
            "requirements": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}
            ],
            **spec,
        },
        "status": {"phase": "Acknowledged"},
    }


def needs(cluster: str, *crs: Any) -> list[capacity_pb2.CapacityNeed]:
    """The needs the operator would send for these requests, folded as it folds them."""
    rollup = build(cluster, list(crs), 0)
    assert not rollup.problems
    return list(rollup.message.needs)


def unmet(
    need: capacity_pb2.CapacityNeed,
    cluster: str,
    reason: shardread_pb2.UnmetReason,
    **fields: Any,
) -> shardread_pb2.NeedView:
    defaults: dict[str, Any] = {
        "residual_deficit": provider_pb2.Resources(resources={"cpu": "4"}),
        "matching_supply": shardread_pb2.MatchingSupply(),
    }
    return shardread_pb2.NeedView(
        need=need, cluster_id=cluster, unmet_reason=reason, **{**defaults, **fields}
    )


def satisfied(
    need: capacity_pb2.CapacityNeed, cluster: str, claimed: int
) -> shardread_pb2.NeedView:
    return shardread_pb2.NeedView(
        need=need, cluster_id=cluster, satisfied=True, claimed_machine_count=claimed
    )


def fleet_rows() -> list[shardread_pb2.NeedView]:
    """Five needs of c1 (one per reason and a satisfied one) and one of c2, shard order."""
    web, batch, gang, urgent, big = (
        needs("c1", cr("web", zone="a"))[0],
        needs("c1", cr("batch", zone="b", priority=50))[0],
        needs("c1", cr("train", coLocation={"topologyKey": "topology.kubernetes.io/rack"}))[0],
        needs("c1", cr("urgent", priority=900_000))[0],
        needs("c1", cr("huge", "96", zone="c"))[0],
    )
    return [
        unmet(
            urgent,
            "c1",
            R.UNMET_REASON_PREEMPTION_EXHAUSTED,
            preemption=shardread_pb2.PreemptionSummary(
                victims_found=1, capacity_freed=provider_pb2.Resources(resources={"cpu": "2"})
            ),
        ),
        satisfied(web, "c1", 2),
        unmet(
            gang,
            "c1",
            R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE,
            same_candidates=[shardread_pb2.DomainCoverage(domain="r1", coverage_per_mille=750)],
            acquisition_parked=True,
            parked_age_cycles=33,
        ),
        unmet(big, "c1", R.UNMET_REASON_NO_MATCHING_SUPPLY, age_cycles_unmet=9),
        satisfied(web, "c2", 1),
        unmet(
            batch,
            "c1",
            R.UNMET_REASON_PRIORITY_STARVED,
            matching_supply=shardread_pb2.MatchingSupply(idle=1, configured=3),
        ),
    ]


@dataclass
class StandIn(shardread_pb2_grpc.ShardReadServicer):
    """A ShardRead that serves canned rows, paged by an offset token, and records requests."""

    rows: list[shardread_pb2.NeedView] = field(default_factory=fleet_rows)
    cycle: int = CYCLE
    page_size: int = 2  # when the request sets no limit
    deny: str = ""  # PERMISSION_DENIED with this text
    roles: frozenset[Role] = frozenset({Role.READONLY, Role.ADMIN})  # under mutual TLS
    advance_after_first_page: int = 0  # move the cycle on after this many first pages
    abort_stale: bool = False  # an old cycle's token is ABORTED, as the real shard does
    requests: list[shardread_pb2.InspectNeedsRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def InspectNeeds(
        self, request: shardread_pb2.InspectNeedsRequest, context: grpc.ServicerContext
    ) -> Iterator[shardread_pb2.InspectNeedsResponse]:
        with self.lock:
            self.requests.append(request)
            if self.deny:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, self.deny)
            identity = peer_identity(context)
            if identity is not None and identity.role not in self.roles:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"InspectNeeds needs bigfleet://readonly or bigfleet://admin; "
                    f"the caller is {identity}",
                )
            cycle, offset = self.cycle, 0
            if request.page_token:
                token_cycle, _, start = request.page_token.partition(":")
                if int(token_cycle) != cycle:
                    if self.abort_stale:
                        context.abort(grpc.StatusCode.ABORTED, "no longer kept; start again")
                    # an old cycle's token: start over from the current cycle's first row
                    start = "0"
                offset = int(start)
            elif self.advance_after_first_page:
                self.advance_after_first_page -= 1
                self.cycle += 1  # the next page will come from a newer cycle
            rows = [
                r for r in self.rows if not request.cluster_id or r.cluster_id == request.cluster_id
            ]
            if not cycle:
                rows = []
            size = request.limit or self.page_size
            page = rows[offset : offset + size]
            more = offset + size < len(rows)
            token = f"{cycle}:{offset + size}" if more else ""
        header = shardread_pb2.InspectNeedsHeader(
            cycle=cycle,
            computed_at_unix_nanos=COMPUTED_AT if cycle else 0,
            total_needs=len(rows),
            next_page_token=token,
        )
        yield shardread_pb2.InspectNeedsResponse(header=header)
        for row in page:
            yield shardread_pb2.InspectNeedsResponse(need=row)


@dataclass
class Served:
    servicer: StandIn
    address: str


def serve(servicer: StandIn, credentials: Credentials | None = None) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    shardread_pb2_grpc.add_ShardReadServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials.server())
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def shard() -> Iterator[Served]:
    servicer = StandIn()
    server, address = serve(servicer)
    yield Served(servicer, address)
    server.stop(0)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---------------------------------------------------------------------------------------------
# Which need a CapacityRequest folded into.


def test_a_request_finds_the_need_it_was_folded_into() -> None:
    mine, twin, other_zone = cr("mine"), cr("twin", "8"), cr("elsewhere", zone="b")
    folded = needs("c1", mine, twin, other_zone)  # mine and twin fold into one need
    views = [
        satisfied(needs("c2", mine)[0], "c2", 9),  # the same shape, another cluster
        *(satisfied(n, "c1", i + 1) for i, n in enumerate(folded)),
    ]
    found = cli_explain.find_view(mine, "c1", views)
    assert found is not None and found.cluster_id == "c1"
    assert dict(found.need.aggregate_resources) == {"cpu": "12", "memory": str(32 * 2**30)}
    assert cli_explain.find_view(twin, "c1", views) is found
    assert cli_explain.find_view(other_zone, "c1", views) is not found
    assert cli_explain.find_view(cr("mine", priority=101), "c1", views) is None  # other fold
    assert cli_explain.find_view(mine, "c3", views) is None


def test_a_gang_request_finds_its_gang() -> None:
    gang = cr("train", coLocation={"topologyKey": "topology.kubernetes.io/rack"})
    other_gang = cr("other", coLocation={"topologyKey": "topology.kubernetes.io/zone"})
    views = [satisfied(n, "c1", 1) for n in needs("c1", gang, other_gang, cr("plain"))]
    found = cli_explain.find_view(gang, "c1", views)
    assert found is not None
    assert any(r.key == "topology.kubernetes.io/rack" for r in found.need.requirements)


def test_an_untranslatable_request_says_why() -> None:
    bad = cr("bad")
    bad["spec"]["resources"] = {"cpu": "four"}
    with pytest.raises(cli_explain.Untranslatable, match="four"):
        cli_explain.find_view(bad, "c1", [])


# ---------------------------------------------------------------------------------------------
# explain capacityrequest, against the real API server and shard: see
# tests/cluster/test_satisfied_condition.py.


def test_explain_capacityrequest_needs_its_cluster_id(shard: Served) -> None:
    result = run("explain", "capacityrequest", "web", "--shard", shard.address)
    assert result.exit_code == 2
    assert "--cluster-id" in result.output


# ---------------------------------------------------------------------------------------------
# explain cluster.


def test_explain_cluster_lists_every_need_and_counts_reasons(shard: Served) -> None:
    result = run("explain", "cluster", "c1", "--shard", shard.address)
    assert result.exit_code == 0, result.output
    assert "cluster c1 on shard 127.0.0.1:" in result.output
    assert "cycle 7, computed 2026-05-28T20:26:40Z, 5 needs" in result.output
    for text in (
        "PreemptionExhausted", "Satisfied", "TopologyUnsatisfiable", "NoMatchingSupply",
        "PriorityStarved", "2 machines cover it", "no single rack fits the gang (best r1 75%)",
        "parked", "4 matching held by higher priority",
    ):  # fmt: skip
        assert text in result.output, text
    assert result.output.rstrip().splitlines()[-1] == (
        "5 needs: 1 Satisfied, 1 PriorityStarved, 1 NoMatchingSupply, "
        "1 TopologyUnsatisfiable, 1 PreemptionExhausted"
    )
    # Three pages of two, each request carrying the last header's token.
    assert [r.page_token for r in shard.servicer.requests] == ["", "7:2", "7:4"]


def test_explain_cluster_as_json_is_a_list(shard: Served) -> None:
    result = run("explain", "cluster", "c1", "--shard", shard.address, "-o", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["reason"] for r in rows] == [
        "PreemptionExhausted", "Satisfied", "TopologyUnsatisfiable", "NoMatchingSupply",
        "PriorityStarved",
    ]  # fmt: skip
    assert {r["cluster_id"] for r in rows} == {"c1"}
    assert rows[0]["preemption"] == {"victims_found": 1, "capacity_freed": {"cpu": "2"}}


def test_explain_cluster_before_the_first_cycle_exits_3(shard: Served) -> None:
    shard.servicer.cycle = 0
    result = run("explain", "cluster", "c1", "--shard", shard.address)
    assert result.exit_code == 3, result.output
    assert "not computed yet" in result.output


def test_explain_cluster_with_no_needs_says_so(shard: Served) -> None:
    result = run("explain", "cluster", "c9", "--shard", shard.address)
    assert result.exit_code == 0, result.output
    assert "the shard has no needs of cluster c9" in result.output


def test_paging_starts_over_when_the_cycle_moves_on(shard: Served) -> None:
    shard.servicer.advance_after_first_page = 1
    result = run("explain", "cluster", "c1", "--shard", shard.address, "-o", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 5
    # First read: page one of cycle 7, then a page of cycle 8: dropped, read again from the top.
    assert [r.page_token for r in shard.servicer.requests] == ["", "7:2", "", "8:2", "8:4"]


def test_paging_starts_over_when_the_shard_no_longer_keeps_the_cycle(shard: Served) -> None:
    shard.servicer.advance_after_first_page = 1
    shard.servicer.abort_stale = True
    result = run("explain", "cluster", "c1", "--shard", shard.address, "-o", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 5
    assert [r.page_token for r in shard.servicer.requests] == ["", "7:2", "", "8:2", "8:4"]


# ---------------------------------------------------------------------------------------------
# ctl inspect-needs.


def test_ctl_inspect_needs_pages_through_every_row(shard: Served) -> None:
    result = run("ctl", "inspect-needs", "--shard-addr", shard.address)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"shard {shard.address}: cycle 7, computed 2026-05-28T20:26:40Z, 6 needs"
    assert lines[1].split() == [
        "CLUSTER", "PRIORITY", "FINGERPRINT", "SATISFIED", "REASON", "DEFICIT", "CLAIMED",
        "AGE_UNMET",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[2:]] == ["c1", "c1", "c1", "c1", "c2", "c1"]
    assert "PreemptionExhausted" in lines[2] and "cpu 4" in lines[2]
    assert [r.page_token for r in shard.servicer.requests] == ["", "7:2", "7:4"]


def test_ctl_inspect_needs_as_json_with_a_cluster_and_a_limit(shard: Served) -> None:
    result = run(
        "ctl", "inspect-needs", "--shard-addr", shard.address, "--cluster", "c1",
        "--limit", "3", "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["cycle"] == CYCLE and data["total_needs"] == 5
    assert [n["reason"] for n in data["needs"]] == [
        "PreemptionExhausted", "Satisfied", "TopologyUnsatisfiable",
    ]  # fmt: skip
    assert [(r.cluster_id, r.limit) for r in shard.servicer.requests] == [("c1", 3)]


def test_ctl_inspect_needs_as_yaml_is_the_json_document(shard: Served) -> None:
    args = ("ctl", "inspect-needs", "--shard-addr", shard.address, "--cluster", "c1")
    as_json, as_yaml = run(*args, "-o", "json"), run(*args, "-o", "yaml")
    assert as_yaml.exit_code == 0, as_yaml.output
    data = yaml.safe_load(as_yaml.stdout)
    assert data == json.loads(as_json.stdout)
    assert data["cycle"] == CYCLE and data["computed_at"] == "2026-05-28T20:26:40Z"
    assert [n["claimed_machine_count"] for n in data["needs"] if n["satisfied"]] == [2]


def test_ctl_inspect_needs_refuses_an_unknown_output_format(shard: Served) -> None:
    result = run("ctl", "inspect-needs", "--shard-addr", shard.address, "-o", "text")
    assert result.exit_code == 2
    assert "Invalid value for '-o' / '--output': 'text' is not one of" in result.stderr
    assert shard.servicer.requests == []  # refused before the shard was read


def test_ctl_inspect_needs_before_the_first_cycle(shard: Served) -> None:
    shard.servicer.cycle = 0
    result = run("ctl", "inspect-needs", "--shard-addr", shard.address)
    assert result.exit_code == 0, result.output
    assert "not computed yet" in result.output
    as_json = json.loads(
        run("ctl", "inspect-needs", "--shard-addr", shard.address, "-o", "json").output
    )
    assert as_json["computed"] is False and as_json["needs"] == []


# ---------------------------------------------------------------------------------------------
# Refusals.


def test_a_refused_certificate_names_the_one_needed(shard: Served) -> None:
    shard.servicer.deny = "InspectNeeds needs bigfleet://readonly or bigfleet://admin"
    result = run("explain", "cluster", "c1", "--shard", shard.address)
    assert result.exit_code == 1
    assert f"PERMISSION_DENIED: the shard at {shard.address} refused this certificate" in (
        result.output
    )
    assert "bigfleet://readonly or bigfleet://admin certificate" in result.output
    assert "bigfleet://cluster/c1" in result.output
    ctl = run("ctl", "inspect-needs", "--shard-addr", shard.address)
    assert ctl.exit_code == 1 and "PERMISSION_DENIED" in ctl.output


def test_an_unreachable_shard_is_named() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    result = run("explain", "cluster", "c1", "--shard", address, "--timeout", "5")
    assert result.exit_code == 1
    assert f"UNAVAILABLE: shard not reachable at {address}" in result.output
    ctl = run("ctl", "--timeout", "5", "inspect-needs", "--shard-addr", address)
    assert ctl.exit_code == 1
    assert f"UNAVAILABLE: shard not reachable at {address}" in ctl.output


def test_mutual_tls_takes_readonly_and_refuses_others(tmp_path: Path) -> None:
    certs = identities.issue(tmp_path / "certs", "--cluster", "c1", "--shard", "s0")
    servicer = StandIn()
    server, address = serve(servicer, Credentials(identities.files(certs, "shard/s0")))
    try:
        ok = run(
            "explain", "cluster", "c1", "--shard", address, *identities.flags(certs, "readonly")
        )
        assert ok.exit_code == 0, ok.output
        assert "5 needs: 1 Satisfied" in ok.output
        admin = run(
            "ctl", *identities.flags(certs, "admin"), "inspect-needs", "--shard-addr", address
        )
        assert admin.exit_code == 0, admin.output
        refused = run(
            "explain", "cluster", "c1", "--shard", address, *identities.flags(certs, "cluster/c1")
        )
        assert refused.exit_code == 1
        assert "PERMISSION_DENIED" in refused.output
        assert "the caller is bigfleet://cluster/c1" in refused.output
        plaintext = run("explain", "cluster", "c1", "--shard", address, "--timeout", "5")
        assert plaintext.exit_code == 1 and "UNAVAILABLE" in plaintext.output
    finally:
        server.stop(0)
