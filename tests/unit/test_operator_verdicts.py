"""The Satisfied condition: verdicts mapped to requests, and when a condition is written."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import grpc
import kr8s
import pytest

from bigfleet.clock import SimulatedClock
from bigfleet.crd.models import CapacityRequestStatus, RequestCondition
from bigfleet.operators.operator import verdicts
from bigfleet.operators.operator.rollup import Rollup, build
from bigfleet.operators.operator.verdicts import (
    REFRESH_S,
    Verdict,
    VerdictPoller,
    Written,
    assign,
    condition,
    due,
    plan,
    read_back,
    requests_by_need,
)
from bigfleet.wire import capacity_pb2, shardread_pb2, shardread_pb2_grpc

R = shardread_pb2.UnmetReason
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 3, 9, 0, tzinfo=UTC)


def cr(name: str, cpu: str = "1", priority: int = 1, zone: str = "a") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "resources": {"cpu": cpu},
            "priority": priority,
            "requirements": [{"key": "zone", "operator": "In", "values": [zone]}],
        },
    }


def rollup() -> Rollup:
    # a and b fold into one need (same shape, resources summed); c is a need of its own.
    return build("c1", [cr("a"), cr("b", cpu="3"), cr("c", priority=5)], 0)


def view(need: capacity_pb2.CapacityNeed, **fields: Any) -> shardread_pb2.NeedView:
    return shardread_pb2.NeedView(need=need, cluster_id="c1", **fields)


def need_of(built: Rollup, priority: int) -> capacity_pb2.CapacityNeed:
    (need,) = [n for n in built.message.needs if n.priority == priority]
    return need


# -- mapping ----------------------------------------------------------------------------------


def test_every_request_of_a_need_gets_its_verdict() -> None:
    built = rollup()
    assert len(built.message.needs) == 2 and len(built.need_keys) == 2
    by_need = requests_by_need(built)
    rows = [
        view(need_of(built, 1), satisfied=True),
        view(need_of(built, 5), unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY),
    ]
    found = assign(rows, by_need)
    assert {k: (v.status, v.reason) for k, v in found.items()} == {
        ("ns", "a"): ("True", "Satisfied"),
        ("ns", "b"): ("True", "Satisfied"),
        ("ns", "c"): ("False", "NoMatchingSupply"),
    }
    assert found[("ns", "c")].message  # a sentence, from bigfleet.explain
    assert found[("ns", "a")].message


def test_the_shards_copy_of_a_need_matches_whatever_order_it_keeps() -> None:
    built = rollup()
    echoed = capacity_pb2.CapacityNeed()
    echoed.CopyFrom(need_of(built, 5))
    requirements = list(echoed.requirements)[::-1]
    del echoed.requirements[:]
    echoed.requirements.extend(requirements)  # the shard keeps its own order
    found = assign([view(echoed, satisfied=True)], requests_by_need(built))
    assert list(found) == [("ns", "c")]


def test_a_row_judged_on_another_total_waits_for_the_next_cycle() -> None:
    """A request joined the need after the shard's cycle: the old verdict is not its."""
    built = rollup()
    older = capacity_pb2.CapacityNeed()
    older.CopyFrom(need_of(built, 5))
    older.aggregate_resources["cpu"] = "9"
    assert assign([view(older, satisfied=True)], requests_by_need(built)) == {}


def test_a_row_for_a_need_the_roll_up_does_not_hold_concerns_no_request() -> None:
    built = rollup()
    other = capacity_pb2.CapacityNeed()
    other.CopyFrom(need_of(built, 5))
    other.priority = 6  # an older fold, or another shape
    assert assign([view(other, satisfied=True)], requests_by_need(built)) == {}


def test_a_request_without_a_row_is_left_out() -> None:
    built = rollup()
    found = assign([view(need_of(built, 5), satisfied=True)], requests_by_need(built))
    assert set(found) == {("ns", "c")}


def test_an_unmet_need_without_a_reason_is_unsatisfied() -> None:
    built = rollup()
    found = assign([view(need_of(built, 5))], requests_by_need(built))
    assert (found[("ns", "c")].status, found[("ns", "c")].reason) == ("False", "Unsatisfied")


# -- when to write ----------------------------------------------------------------------------

MET = Verdict("True", "Satisfied", "satisfied")
STARVED = Verdict("False", "PriorityStarved", "waiting: unmet for 3 cycles")


def written(v: Verdict, at: float = 0.0, since: datetime | None = T0) -> Written:
    return Written(v.status, v.reason, v.message, since, at)


def test_a_request_without_the_condition_is_written_at_once() -> None:
    assert due(None, MET, now=0.0, refresh_s=REFRESH_S) == 2


def test_a_new_status_or_reason_is_written_at_once() -> None:
    assert due(written(MET, at=100.0), STARVED, now=100.5, refresh_s=REFRESH_S) == 2
    other = Verdict("False", "NoMatchingSupply", STARVED.message)
    assert due(written(STARVED, at=100.0), other, now=100.5, refresh_s=REFRESH_S) == 2


def test_a_new_message_alone_waits_for_the_refresh_interval() -> None:
    newer = Verdict("False", "PriorityStarved", "waiting: unmet for 4 cycles")
    before = written(STARVED, at=100.0)
    assert due(before, newer, now=100.0 + REFRESH_S - 1, refresh_s=REFRESH_S) == 0
    assert due(before, newer, now=100.0 + REFRESH_S, refresh_s=REFRESH_S) == 1
    assert due(before, STARVED, now=10_000.0, refresh_s=REFRESH_S) == 0  # nothing changed


def test_a_condition_read_back_after_a_restart_is_not_rewritten_unchanged() -> None:
    seen = read_back(
        {
            "status": {
                "conditions": [
                    {"type": "Translatable", "status": "False"},
                    {
                        "type": "Satisfied",
                        "status": "True",
                        "reason": "Satisfied",
                        "message": "satisfied",
                        "lastTransitionTime": "2026-01-02T03:04:05Z",
                    },
                ]
            }
        }
    )
    assert seen == Written("True", "Satisfied", "satisfied", T0, float("-inf"))
    assert due(seen, MET, now=0.0, refresh_s=REFRESH_S) == 0
    newer = Verdict("True", "Satisfied", "satisfied, again")
    assert due(seen, newer, now=0.0, refresh_s=REFRESH_S) == 1  # its age is unknown: old
    assert read_back({"status": {}}) is None
    assert read_back(None) is None


def test_a_tick_writes_transitions_first_up_to_the_cap() -> None:
    chosen = {("ns", f"t{i}"): STARVED for i in range(3)}
    refresh = {("ns", f"m{i}"): Verdict("True", "Satisfied", "new words") for i in range(3)}
    quiet = {("ns", "q"): MET}
    before = {key: written(MET, at=0.0) for key in (*refresh, *quiet)}
    todo, deferred = plan(
        {**refresh, **quiet, **chosen}, before, now=REFRESH_S, refresh_s=REFRESH_S, cap=4
    )
    assert todo[:3] == sorted(chosen)  # every transition before any message refresh
    assert todo[3] in refresh and ("ns", "q") not in todo
    assert deferred == 2


def test_the_transition_time_moves_only_with_the_status() -> None:
    kept = condition(written(STARVED), Verdict("False", "NoMatchingSupply", "x"), T1)
    assert kept.last_transition_time == T0 and kept.reason == "NoMatchingSupply"
    moved = condition(written(STARVED), MET, T1)
    assert moved.last_transition_time == T1 and moved.status == "True"
    assert condition(None, MET, T1).last_transition_time == T1
    assert condition(written(MET, since=None), MET, T1).last_transition_time == T1


def test_the_status_model_admits_the_satisfied_condition() -> None:
    status = CapacityRequestStatus.from_object(
        {"phase": "Acknowledged", "conditions": [condition(None, STARVED, T0).to_object()]}
    )
    assert status.conditions is not None
    assert status.conditions[0] == RequestCondition(
        type="Satisfied",
        status="False",
        reason="PriorityStarved",
        message=STARVED.message,
        last_transition_time=T0,
    )
    assert status.conditions[0].to_object()["lastTransitionTime"] == "2026-01-02T03:04:05Z"


# -- the poller, its reads and writes stubbed -------------------------------------------------


class Rig:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, built: Rollup | None) -> None:
        self.clock = SimulatedClock()
        self.applied: list[tuple[str, RequestCondition]] = []
        self.events: list[tuple[str, str]] = []
        self.gone: set[str] = set()
        self.cached: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.page: tuple[shardread_pb2.InspectNeedsHeader | None, list[Any]] = (None, [])
        self.error: grpc.aio.AioRpcError | None = None

        async def apply(api: Any, ns: str, name: str, cond: RequestCondition, who: str) -> None:
            assert who == verdicts.MANAGER
            if name in self.gone:
                raise kr8s.NotFoundError("gone")
            self.applied.append((name, cond))

        async def event(ns: str, name: str, reason: str, message: str) -> None:
            self.events.append((name, reason))

        monkeypatch.setattr(verdicts, "apply_condition", apply)
        self.poller = VerdictPoller(
            cluster_id="c1",
            shard_address="127.0.0.1:1",
            api=None,  # type: ignore[arg-type]
            rollup=lambda: built,
            current=lambda ns, name: self.cached.get((ns, name)),
            on_unsatisfied=event,
            clock=self.clock,
        )

        async def fetch() -> tuple[shardread_pb2.InspectNeedsHeader | None, list[Any]]:
            if self.error is not None:
                raise self.error
            return self.page

        self.poller.fetch = fetch  # type: ignore[method-assign]


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


async def test_the_poller_writes_each_verdict_once_and_warns_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = rollup()
    rig = Rig(monkeypatch, built)
    rows = [
        view(need_of(built, 1), satisfied=True),
        view(need_of(built, 5), unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY),
    ]
    rig.page = (shardread_pb2.InspectNeedsHeader(cycle=0), rows)
    await rig.poller.tick()
    assert rig.applied == []  # no cycle yet: nothing to say
    rig.page = (shardread_pb2.InspectNeedsHeader(cycle=7), rows)
    rig.gone = {"b"}
    await rig.poller.tick()
    assert sorted((n, c.status, c.reason) for n, c in rig.applied) == [
        ("a", "True", "Satisfied"),
        ("c", "False", "NoMatchingSupply"),
    ]
    assert rig.events == [("c", "NoMatchingSupply")]
    rig.applied.clear()
    rig.clock.advance(1)
    await rig.poller.tick()  # unchanged: nothing written, no second Event
    assert rig.applied == [] and rig.events == [("c", "NoMatchingSupply")]
    writes = rig.poller.metrics.satisfied_condition_writes
    assert writes.labels("False", "NoMatchingSupply")._value.get() == 1


async def test_a_shard_without_shardread_is_asked_seldom(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(monkeypatch, rollup())
    rig.error = rpc_error(grpc.StatusCode.UNIMPLEMENTED)
    await rig.poller.tick()
    assert rig.poller.sleep_s() == verdicts.UNIMPLEMENTED_INTERVAL_S
    assert rig.poller.stuck_after() > rig.poller.sleep_s()
    failures = rig.poller.metrics.verdict_poll_failures
    assert failures.labels("UNIMPLEMENTED")._value.get() == 1
    rig.error = None
    rig.page = (shardread_pb2.InspectNeedsHeader(cycle=1), [])
    await rig.poller.tick()
    assert rig.poller.sleep_s() == 10.0  # it answered: back to the interval


async def test_a_refused_identity_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(monkeypatch, rollup())
    rig.error = rpc_error(grpc.StatusCode.PERMISSION_DENIED)
    for _ in range(3):
        await rig.poller.tick()
    warned = [r for r in caplog.records if "bigfleet://cluster/c1" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"


async def test_nothing_is_read_before_a_roll_up_went_out(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(monkeypatch, None)
    rig.error = rpc_error(grpc.StatusCode.INTERNAL)  # would be counted if it were asked
    await rig.poller.tick()
    assert rig.poller.metrics.verdict_poll_failures.labels("INTERNAL")._value.get() == 0


class PagedStub:
    """ShardRead's stub as the poller sees it: two pages, then the end."""

    def __init__(self, rows: list[shardread_pb2.NeedView], cycle: int = 3) -> None:
        self.rows, self.cycle = rows, cycle
        self.asked: list[shardread_pb2.InspectNeedsRequest] = []
        self.aborts = 0  # later pages refused as from a cycle no longer kept, this many times

    def __call__(self, channel: Any) -> PagedStub:
        return self

    def InspectNeeds(self, request: shardread_pb2.InspectNeedsRequest, timeout: float) -> Any:
        self.asked.append(request)
        start = int(request.page_token or 0)
        page = self.rows[start : start + request.limit]
        after = start + request.limit
        token = str(after) if after < len(self.rows) else ""
        header = shardread_pb2.InspectNeedsHeader(
            cycle=self.cycle, total_needs=len(self.rows), next_page_token=token
        )

        async def frames() -> Any:
            if request.page_token and self.aborts:
                self.aborts -= 1
                raise rpc_error(grpc.StatusCode.ABORTED)
            yield shardread_pb2.InspectNeedsResponse(header=header)
            for row in page:
                yield shardread_pb2.InspectNeedsResponse(need=row)

        return frames()


def paged_poller(monkeypatch: pytest.MonkeyPatch, stub: PagedStub, built: Rollup) -> VerdictPoller:
    """A poller of cluster c1 reading one row a page from `stub`."""
    monkeypatch.setattr(shardread_pb2_grpc, "ShardReadStub", stub)
    return VerdictPoller(
        cluster_id="c1",
        shard_address="127.0.0.1:1",
        api=None,  # type: ignore[arg-type]
        rollup=lambda: built,
        page_size=1,
    )


async def test_every_page_is_read_for_the_own_cluster_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = rollup()
    rows = [view(n, satisfied=True) for n in built.message.needs]
    rows.append(shardread_pb2.NeedView(need=built.message.needs[0], cluster_id="other"))
    stub = PagedStub(rows)
    poller = paged_poller(monkeypatch, stub, built)
    try:
        header, found = await poller.fetch()
    finally:
        await poller._close()
    assert header is not None and header.cycle == 3
    assert [r.cluster_id for r in found] == ["c1", "c1"]
    assert [r.page_token for r in stub.asked] == ["", "1", "2"]
    assert {r.cluster_id for r in stub.asked} == {"c1"} and {r.limit for r in stub.asked} == {1}

    stub.cycle = 0
    assert await poller.fetch() == (
        shardread_pb2.InspectNeedsHeader(cycle=0, total_needs=3, next_page_token="1"),
        [],
    )
    await poller._close()


async def test_a_walk_whose_cycle_is_gone_starts_again_a_few_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = rollup()
    stub = PagedStub([view(n, satisfied=True) for n in built.message.needs])
    poller = paged_poller(monkeypatch, stub, built)
    try:
        stub.aborts = 1
        _, found = await poller.fetch()
        assert len(found) == 2  # the first page's row is not kept twice
        assert [r.page_token for r in stub.asked] == ["", "1", "", "1"]
        stub.aborts = verdicts.WALK_RESTARTS
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await poller.fetch()
        assert raised.value.code() == grpc.StatusCode.ABORTED
    finally:
        await poller._close()


async def test_a_request_unmet_again_after_being_met_is_warned_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = rollup()
    rig = Rig(monkeypatch, built)
    unmet = view(need_of(built, 5), unmet_reason=R.UNMET_REASON_NO_MATCHING_SUPPLY)
    met = view(need_of(built, 5), satisfied=True)
    for row in (unmet, unmet, met, unmet):
        rig.page = (shardread_pb2.InspectNeedsHeader(cycle=1), [row])
        await rig.poller.tick()
        rig.clock.advance(1)
    assert rig.events == [("c", "NoMatchingSupply"), ("c", "NoMatchingSupply")]


async def test_a_condition_someone_removed_is_written_again_once_the_watch_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = rollup()
    rig = Rig(monkeypatch, built)
    rig.page = (
        shardread_pb2.InspectNeedsHeader(cycle=2),
        [view(need_of(built, 5), satisfied=True)],
    )
    await rig.poller.tick()
    ((_, cond),) = rig.applied
    rig.cached[("ns", "c")] = {"status": {"conditions": [cond.to_object()]}}
    rig.clock.advance(verdicts.SETTLE_S)
    await rig.poller.tick()
    assert len(rig.applied) == 1  # the watch shows it: nothing to do
    rig.cached[("ns", "c")] = {"status": {"conditions": []}}  # a merge patch replaced the list
    await rig.poller.tick()
    assert [n for n, _ in rig.applied] == ["c", "c"]
