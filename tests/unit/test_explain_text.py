"""Verdicts in words (`bigfleet.explain`): each reason's sentence, the condition text, the JSON.

Each case's full rendering is compared with its golden file under
golden/explain/; after a deliberate wording change, regenerate them with
`BIGFLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_explain_text.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bigfleet import explain
from bigfleet.wire import capacity_pb2, provider_pb2, shardread_pb2

GOLDEN = Path(__file__).parent / "golden" / "explain"
UPDATE = os.environ.get("BIGFLEET_UPDATE_GOLDEN") == "1"

Req = capacity_pb2.NodeSelectorRequirement
Op = Req.Operator
R = shardread_pb2.UnmetReason
ARRIVAL = 1_780_000_000_000_000_000  # 2026-05-28T20:26:40Z

INSTANCE = Req(key="node.kubernetes.io/instance-type", operator=Op.OPERATOR_IN, values=["m5.large"])
ZONE = Req(key="topology.kubernetes.io/zone", operator=Op.OPERATOR_IN, values=["a"])
RACK = Req(key="topology.kubernetes.io/rack", operator=Op.OPERATOR_SAME)


def need(
    *requirements: Req, priority: int = 100, resources: dict[str, str] | None = None
) -> capacity_pb2.CapacityNeed:
    total = resources or {"cpu": "8", "memory": "32Gi"}
    return capacity_pb2.CapacityNeed(
        requirements=list(requirements),
        aggregate_resources=total,
        min_unit={"cpu": "2", "memory": "8Gi"} if not resources else total,
        priority=priority,
        group="gang-1" if RACK in requirements else "",
    )


def res(**values: str) -> provider_pb2.Resources:
    return provider_pb2.Resources(resources=values)


def view(**fields: object) -> shardread_pb2.NeedView:
    defaults: dict[str, object] = {
        "need": need(INSTANCE, ZONE),
        "cluster_id": "c1",
        "arrival_unix_nanos": ARRIVAL,
        "profile_fingerprint": "a1b2c3d4e5f6a7b8",
    }
    return shardread_pb2.NeedView(**{**defaults, **fields})  # type: ignore[arg-type]


CASES: dict[str, shardread_pb2.NeedView] = {
    "satisfied": view(satisfied=True, claimed_machine_count=3, bootstrap_count=1),
    "satisfied_provisioning": view(
        satisfied=True, claimed_machine_count=2, bootstrap_count=1, provision_count=1
    ),
    "priority_starved": view(
        unmet_reason=R.UNMET_REASON_PRIORITY_STARVED,
        residual_deficit=res(cpu="8", memory="34359738368"),
        matching_supply=shardread_pb2.MatchingSupply(idle=1, configured=3),
        age_cycles_unmet=7,
    ),
    "priority_starved_capped": view(
        unmet_reason=R.UNMET_REASON_PRIORITY_STARVED,
        residual_deficit=res(cpu="4"),
        matching_supply=shardread_pb2.MatchingSupply(configured=1000, capped=True),
        claimed_machine_count=1,
        bootstrap_count=1,
        age_cycles_unmet=1,
    ),
    "no_matching_supply": view(
        unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY,
        residual_deficit=res(cpu="8", memory="32Gi"),
        matching_supply=shardread_pb2.MatchingSupply(),
        age_cycles_unmet=12,
    ),
    "no_matching_supply_beyond_own": view(
        unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY,
        residual_deficit=res(cpu="4"),
        matching_supply=shardread_pb2.MatchingSupply(configured=2),
        claimed_machine_count=2,
        age_cycles_unmet=3,
    ),
    "priority_starved_in_transition": view(
        unmet_reason=R.UNMET_REASON_PRIORITY_STARVED,
        residual_deficit=res(cpu="8"),
        matching_supply=shardread_pb2.MatchingSupply(configured=1, in_transition=2),
        age_cycles_unmet=2,
    ),
    "topology_unsatisfiable_spread": view(
        need=capacity_pb2.CapacityNeed(
            aggregate_resources={"cpu": "16"},
            min_unit={"cpu": "4"},
            priority=100,
            spread=[
                capacity_pb2.TopologySpread(
                    topology_key="topology.kubernetes.io/zone",
                    max_skew=1,
                    when_unsatisfiable=capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE,
                )
            ],
        ),
        unmet_reason=R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE,
        residual_deficit=res(cpu="8"),
        matching_supply=shardread_pb2.MatchingSupply(idle=3, configured=2),
        claimed_machine_count=2,
        age_cycles_unmet=4,
    ),
    "no_matching_supply_operators": view(
        need=need(
            Req(key="bigfleet.lucy.sh/capacity-type", operator=Op.OPERATOR_NOT_IN, values=["spot"]),
            Req(key="nvidia.com/gpu.product", operator=Op.OPERATOR_EXISTS),
            Req(key="example.com/legacy", operator=Op.OPERATOR_DOES_NOT_EXIST),
            Req(key="topology.kubernetes.io/zone", operator=Op.OPERATOR_IN, values=["b", "a"]),
        ),
        unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY,
        residual_deficit=res(cpu="8"),
        matching_supply=shardread_pb2.MatchingSupply(),
    ),
    "no_matching_supply_any_machine": view(
        need=need(resources={"cpu": "96", "memory": "768Gi"}),
        unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY,
        residual_deficit=res(cpu="96", memory="768Gi"),
        matching_supply=shardread_pb2.MatchingSupply(),
    ),
    "topology_unsatisfiable_parked": view(
        need=need(RACK, resources={"nvidia.com/gpu": "32"}),
        unmet_reason=R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE,
        residual_deficit=res(**{"nvidia.com/gpu": "8"}),
        matching_supply=shardread_pb2.MatchingSupply(idle=2, configured=5),
        claimed_machine_count=3,
        same_domain="r1",
        same_candidates=[
            shardread_pb2.DomainCoverage(domain="r1", coverage_per_mille=750),
            shardread_pb2.DomainCoverage(domain="r2", coverage_per_mille=500),
            shardread_pb2.DomainCoverage(domain="r3", coverage_per_mille=125),
            shardread_pb2.DomainCoverage(domain="r4", coverage_per_mille=5),
        ],
        acquisition_parked=True,
        parked_age_cycles=40,
        age_cycles_unmet=52,
    ),
    "topology_unsatisfiable_no_domain": view(
        need=need(RACK, resources={"nvidia.com/gpu": "32"}),
        unmet_reason=R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE,
        residual_deficit=res(**{"nvidia.com/gpu": "32"}),
        matching_supply=shardread_pb2.MatchingSupply(),
        age_cycles_unmet=2,
    ),
    "preemption_exhausted": view(
        need=need(INSTANCE, ZONE, priority=900_000),
        unmet_reason=R.UNMET_REASON_PREEMPTION_EXHAUSTED,
        residual_deficit=res(cpu="8"),
        matching_supply=shardread_pb2.MatchingSupply(configured=2),
        preemption=shardread_pb2.PreemptionSummary(victims_found=2, capacity_freed=res(cpu="16")),
        age_cycles_unmet=3,
    ),
    "preemption_no_victims": view(
        unmet_reason=R.UNMET_REASON_PREEMPTION_EXHAUSTED,
        residual_deficit=res(cpu="8", memory="32Gi"),
        matching_supply=shardread_pb2.MatchingSupply(configured=4),
    ),
    "unmet_without_reason": view(residual_deficit=res(cpu="500m")),
    "preempting": view(
        residual_deficit=res(cpu="8"),
        matching_supply=shardread_pb2.MatchingSupply(configured=1),
        preemption=shardread_pb2.PreemptionSummary(victims_found=1, capacity_freed=res(cpu="8")),
        age_cycles_unmet=1,
    ),
}


def render(v: shardread_pb2.NeedView) -> str:
    rows = "\n".join(f"  {name}: {value}" for name, value in explain.table(v))
    return (
        f"sentence: {explain.sentence(v)}\n"
        f"brief: {explain.brief(v)}\n"
        f"reason: {explain.reason(v)}\n"
        f"condition: {explain.condition_message(v)}\n"
        f"table:\n{rows}\n"
        f"json:\n{json.dumps(explain.as_dict(v), indent=2, ensure_ascii=False)}\n"
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_verdict_reads_as_its_golden(case: str) -> None:
    path = GOLDEN / f"{case}.txt"
    text = render(CASES[case])
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; see the module docstring to regenerate"


def test_every_golden_file_has_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(CASES)


def test_the_sentences_a_workload_owner_reads() -> None:
    assert explain.sentence(CASES["satisfied"]) == (
        "satisfied: 3 machines of cluster c1 cover it (1 bootstrapped this cycle)"
    )
    assert explain.sentence(CASES["no_matching_supply"]) == (
        "waiting: no machine matching instance type m5.large, zone a exists in any state "
        "(Idle, Configured or Speculative); the fleet needs such machines before this can be "
        "met; unmet for 12 cycles"
    )
    assert explain.sentence(CASES["priority_starved"]) == (
        "waiting: 4 matching machines exist (1 Idle, 3 Configured, 0 Speculative) but needs of "
        "higher priority hold them; short by cpu 8, memory 32Gi; unmet for 7 cycles"
    )
    assert explain.sentence(CASES["topology_unsatisfiable_parked"]).startswith(
        "waiting: no single rack (topology.kubernetes.io/rack) can hold the whole gang; "
        "best: r1 covers 75%, r2 50%, r3 12.5% (and 1 more)"
    )
    assert "acquisition parked for 40 cycles; re-probed periodically; unmet for 52 cycles" in (
        explain.sentence(CASES["topology_unsatisfiable_parked"])
    )
    assert explain.sentence(CASES["preempting"]) == (
        "waiting: 1 lower-priority machine drains for it, freeing cpu 8; met once it has "
        "drained; unmet for 1 cycle"
    )
    assert explain.sentence(CASES["preemption_exhausted"]) == (
        "waiting: preempting 2 lower-priority machines frees cpu 16 but cpu 8 is still missing; "
        "unmet for 3 cycles"
    )


def test_reasons_are_the_condition_reasons() -> None:
    assert [explain.reason(CASES[c]) for c in ("satisfied", "unmet_without_reason")] == [
        explain.SATISFIED,
        explain.UNSATISFIED,
    ]
    assert explain.as_dict(CASES["priority_starved"])["reason"] == "PriorityStarved"
    assert explain.as_dict(CASES["preemption_exhausted"])["reason"] == "PreemptionExhausted"


def test_requirements_read_as_words() -> None:
    many = Req(key="zone", operator=Op.OPERATOR_IN, values=[f"z{i}" for i in range(8)])
    assert explain.requirement_words(many) == "zone z0, z1, z2, z3, z4 or 3 more"
    assert explain.requirement_words(Req(key="k", operator=Op.OPERATOR_IN, values=["b", "a"])) == (
        "k a or b"
    )
    same = Req(key="topology.kubernetes.io/rack", operator=Op.OPERATOR_SAME, values=["r1", "r2"])
    assert explain.requirement_words(same) == "all in one rack of r1 or r2"
    assert explain.requirement_text(same) == "topology.kubernetes.io/rack Same (r1,r2)"


def test_quantities_read_as_people_write_them() -> None:
    assert explain.show_quantity("memory", "34359738368") == "32Gi"
    assert explain.show_quantity("memory", "1610612736") == "1536Mi"
    assert explain.show_quantity("memory", "1000") == "1000"
    assert explain.show_quantity("cpu", "2048") == "2048"
    assert explain.show_quantity("cpu", "0.5") == "500m"
    assert explain.show_quantity("cpu", "lots") == "lots"  # shown as sent, never refused
    assert explain.resources_words({"memory": "8Gi", "cpu": "0", "nvidia.com/gpu": "1"}) == (
        "memory 8Gi, nvidia.com/gpu 1"
    )


def test_the_text_does_not_depend_on_the_order_things_arrived_in() -> None:
    forward = view(need=need(INSTANCE, ZONE), unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY)
    backward = view(need=need(ZONE, INSTANCE), unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY)
    assert render(forward) == render(backward)


def test_a_condition_message_stays_short() -> None:
    long_keys = [
        Req(key=f"example.com/label-{i}-{'x' * 40}", operator=Op.OPERATOR_IN, values=["v" * 60])
        for i in range(20)
    ]
    v = view(
        need=need(*long_keys),
        unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY,
        acquisition_parked=True,
        parked_age_cycles=99,
        age_cycles_unmet=100,
    )
    message = explain.condition_message(v)
    assert len(message) <= explain.MAX_CONDITION_MESSAGE
    assert message.startswith("waiting: no machine matching")
    assert message.endswith("…")
    short = CASES["satisfied"]
    assert explain.condition_message(short) == explain.sentence(short)


def test_a_shard_that_has_not_run_a_cycle_is_explained() -> None:
    for header in (None, shardread_pb2.InspectNeedsHeader(cycle=0)):
        assert not explain.computed(header)
        assert explain.header_sentence(header) == explain.NOT_COMPUTED_SENTENCE
        assert explain.header_dict(header)["computed"] is False
    assert explain.NOT_COMPUTED_SENTENCE.startswith(
        "not computed yet: the shard has not run a cycle since it started"
    )
    header = shardread_pb2.InspectNeedsHeader(
        cycle=42, computed_at_unix_nanos=ARRIVAL, total_needs=7
    )
    assert explain.computed(header)
    assert explain.header_sentence(header) == "cycle 42, computed 2026-05-28T20:26:40Z, 7 needs"
    assert explain.header_dict(header) == {
        "computed": True,
        "cycle": 42,
        "computed_at": "2026-05-28T20:26:40Z",
        "computed_at_unix_nanos": ARRIVAL,
        "total_needs": 7,
    }
    assert explain.no_need_sentence("Acknowledged") == (
        "the shard has no need for this request yet: the operator has not rolled it up "
        "(phase: Acknowledged) or the shard's cycle has not run"
    )


def test_json_is_plain_data_with_stable_keys() -> None:
    for v in CASES.values():
        data = explain.as_dict(v)
        assert json.loads(json.dumps(data)) == data
        assert list(data) == list(explain.as_dict(CASES["satisfied"]))
    unmet = explain.as_dict(CASES["priority_starved"])
    assert unmet["residual_deficit"] == {"cpu": "8", "memory": "34359738368"}  # as sent
    assert unmet["matching_supply"] == {
        "idle": 1,
        "configured": 3,
        "speculative": 0,
        "in_transition": 0,
        "capped": False,
    }
    assert unmet["preemption"] is None
    assert explain.as_dict(CASES["satisfied"])["matching_supply"] is None
