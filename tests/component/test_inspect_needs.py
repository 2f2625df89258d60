"""ShardRead.InspectNeeds over real gRPC: a real shard, the fake provider, scripted operators.

Each reason comes from a fleet built to produce it; paging, filtering, refusals
and who may read what under mutual TLS are checked on the same server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from bigfleet.providers_fake.config import FleetConfig, Pool
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.runtime.inspect import (
    MAX_PAGE_ROWS,
    ShardReadService,
    VerdictShelf,
    encode_token,
)
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.service import ShardService
from bigfleet.tls import Credentials, channel, load
from bigfleet.wire import GRPC_OPTIONS, capacity_pb2, shardread_pb2, shardread_pb2_grpc
from tests.component.harness import Rig, eventually, need, rig
from tests.component.test_shard_tls import tls_rig
from tests.support import identities
from tests.unit.engine import builders
from tests.unit.engine.builders import table

R = shardread_pb2.UnmetReason
Req = capacity_pb2.NodeSelectorRequirement


async def inspect(
    port: int,
    cluster: str = "",
    limit: int = 0,
    token: str = "",
    credentials: Credentials | None = None,
) -> tuple[shardread_pb2.InspectNeedsHeader, list[shardread_pb2.NeedView]]:
    async with channel(f"127.0.0.1:{port}", credentials, options=GRPC_OPTIONS) as ch:
        stub = shardread_pb2_grpc.ShardReadStub(ch)
        request = shardread_pb2.InspectNeedsRequest(
            cluster_id=cluster, limit=limit, page_token=token
        )
        frames = [frame async for frame in stub.InspectNeeds(request, timeout=10)]
    assert frames[0].WhichOneof("frame") == "header"
    assert all(f.WhichOneof("frame") == "need" for f in frames[1:])
    return frames[0].header, [f.need for f in frames[1:]]


async def refusal(port: int, **kwargs: object) -> grpc.aio.AioRpcError:
    try:
        await inspect(port, **kwargs)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the shard answered")


async def verdict_of(
    shard: ShardService, cluster: str, *, reason: int, satisfied: bool = False
) -> shardread_pb2.NeedView:
    """Wait for the cluster's only row to read `reason`; the row."""
    found: list[shardread_pb2.NeedView] = []

    async def probe() -> bool:
        _, rows = await inspect(shard.port, cluster)
        found[:] = rows
        return len(rows) == 1 and rows[0].unmet_reason == reason and rows[0].satisfied == satisfied

    deadline = asyncio.get_running_loop().time() + 15
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{cluster}: wanted {R.Name(reason)}, rows are {found}")
        await asyncio.sleep(0.05)
    return found[0]


async def rows_computed(r: Rig, count: int) -> None:
    """Until the last cycle's verdicts hold `count` rows."""

    def probe() -> bool:
        latest = r.shard.verdicts.latest() if r.shard is not None else None
        return latest is not None and len(latest.sheet) == count

    await eventually(probe, what=f"{count} rows computed")


@asynccontextmanager
async def served(tmp_path: Path, **kwargs: object) -> AsyncIterator[Rig]:
    async with rig(tmp_path, **kwargs) as r:  # type: ignore[arg-type]
        await r.start_shard()
        yield r


async def test_a_need_the_fleet_covers_reads_satisfied_with_its_counts(tmp_path: Path) -> None:
    async with served(tmp_path, idle=2) as r:
        assert r.shard is not None
        op = r.operator("c-a")
        op.start()
        op.rollup(need(16))
        view = await verdict_of(r.shard, "c-a", reason=R.UNMET_REASON_UNSPECIFIED, satisfied=True)
        assert view.claimed_machine_count == 2
        assert view.need.aggregate_resources["cpu"] == "16"
        assert view.cluster_id == "c-a" and view.profile_fingerprint
        assert not view.HasField("residual_deficit") and not view.HasField("matching_supply")
        header, _ = await inspect(r.shard.port)
        assert header.cycle >= 1 and header.computed_at_unix_nanos > 0 and header.total_needs == 1
        await op.close()


async def test_an_instance_type_no_machine_has_reads_no_matching_supply(tmp_path: Path) -> None:
    async with served(tmp_path, idle=2) as r:
        assert r.shard is not None
        op = r.operator("c-a")
        op.start()
        wanted = need(8)
        wanted.requirements[0].values[:] = ["gpu.giant"]
        op.rollup(wanted)
        view = await verdict_of(r.shard, "c-a", reason=R.UNMET_REASON_NO_MATCHING_SUPPLY)
        assert view.residual_deficit.resources["cpu"] == "8"
        supply = view.matching_supply
        assert (supply.idle, supply.configured, supply.speculative) == (0, 0, 0)
        assert view.age_cycles_unmet >= 1
        await op.close()


async def test_machines_held_by_a_higher_priority_cluster_starve_a_lower_one(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, idle=2) as r:
        assert r.shard is not None
        high, low = r.operator("c-high"), r.operator("c-low")
        high.start()
        high.rollup(need(16, priority=1000))
        await verdict_of(r.shard, "c-high", reason=R.UNMET_REASON_UNSPECIFIED, satisfied=True)
        low.start()
        low.rollup(need(8, priority=10))
        view = await verdict_of(r.shard, "c-low", reason=R.UNMET_REASON_PRIORITY_STARVED)
        assert view.matching_supply.configured == 2
        await high.close()
        await low.close()


async def test_too_few_lower_priority_victims_reads_preemption_exhausted(tmp_path: Path) -> None:
    async with served(tmp_path, idle=1) as r:
        assert r.shard is not None
        low, high = r.operator("c-low"), r.operator("c-high")
        low.start()
        low.rollup(need(8, priority=10))
        await verdict_of(r.shard, "c-low", reason=R.UNMET_REASON_UNSPECIFIED, satisfied=True)
        # Decide without acting from now on, so the verdict holds still to be read.
        r.shard.apply_controls(
            pause_acquisitions=False, pause_reclaims=False, dry_run=True, cycle_interval_s=0.2
        )
        high.start()
        high.rollup(need(24, priority=1000))
        view = await verdict_of(r.shard, "c-high", reason=R.UNMET_REASON_PREEMPTION_EXHAUSTED)
        assert view.preemption.victims_found == 1
        assert view.preemption.capacity_freed.resources["cpu"] == "8"
        assert view.residual_deficit.resources["cpu"] == "16"
        await low.close()
        await high.close()


async def test_a_gang_no_single_rack_can_hold_reads_topology_unsatisfiable(tmp_path: Path) -> None:
    racks = FleetConfig(
        pools=tuple(
            Pool(prefix=f"rack-{rack}", count=2, state="idle", labels={"rack": rack})
            for rack in ("r1", "r2")
        )
    )
    async with served(tmp_path, idle=0, config=racks) as r:
        assert r.shard is not None
        op = r.operator("c-a")
        op.start()
        gang = need(24, group="train")
        gang.requirements.append(Req(key="rack", operator=Req.OPERATOR_SAME))
        op.rollup(gang)
        view = await verdict_of(r.shard, "c-a", reason=R.UNMET_REASON_TOPOLOGY_UNSATISFIABLE)
        assert view.same_domain in ("r1", "r2") and not view.same_satisfiable
        assert view.same_candidates[0].domain == view.same_domain
        assert {c.domain for c in view.same_candidates} == {"r1", "r2"}
        assert all(c.coverage_per_mille == 666 for c in view.same_candidates)
        await op.close()


async def test_pages_walk_every_row_of_one_cycle_and_filters_hold(tmp_path: Path) -> None:
    async with served(tmp_path, idle=1) as r:
        assert r.shard is not None
        ops = [r.operator(c) for c in ("c-a", "c-b")]
        for op in ops:
            op.start()
        ops[0].rollup(*(need(8, priority=p) for p in (500, 400, 300)))
        ops[1].rollup(need(8, priority=450), need(8, priority=50))
        await eventually(lambda: r.shard is not None and len(r.shard.state.table.snapshot()) == 5)
        await eventually(
            lambda: (
                r.shard is not None
                and r.shard.verdicts.latest() is not None
                and len(r.shard.verdicts.latest().sheet) == 5
            )  # type: ignore[union-attr]
        )
        # Decide without acting: the rows hold still while the pages are read.
        r.shard.apply_controls(
            pause_acquisitions=False, pause_reclaims=False, dry_run=True, cycle_interval_s=60
        )
        await asyncio.sleep(0.3)
        walked, token, cycles = [], "", set()
        while True:
            header, rows = await inspect(r.shard.port, limit=2, token=token)
            assert header.total_needs == 5
            walked += rows
            cycles.add(header.cycle)
            token = header.next_page_token
            if not token:
                break
        assert len(cycles) == 1
        assert [v.need.priority for v in walked] == [500, 450, 400, 300, 50]
        _, only_b = await inspect(r.shard.port, cluster="c-b")
        assert [v.need.priority for v in only_b] == [450, 50]
        header, none = await inspect(r.shard.port, cluster="c-unknown")
        assert none == [] and header.total_needs == 0 and header.cycle >= 1
        for op in ops:
            await op.close()


async def test_bad_requests_and_stale_tokens_are_refused_naming_the_field(tmp_path: Path) -> None:
    async with served(tmp_path, idle=1) as r:
        assert r.shard is not None
        op = r.operator("c-a")
        op.start()
        op.rollup(need(8), need(8, priority=7))
        await rows_computed(r, 2)
        err = await refusal(r.shard.port, limit=-1)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in (err.details() or "")
        err = await refusal(r.shard.port, cluster="Not_A_Name")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cluster_id" in (err.details() or "")
        err = await refusal(r.shard.port, token="!!not-a-token!!")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (err.details() or "")
        header, _ = await inspect(r.shard.port, limit=1)
        assert header.next_page_token
        start = r.shard.cycles
        await eventually(lambda: r.shard is not None and r.shard.cycles > start + 5)
        err = await refusal(r.shard.port, limit=1, token=header.next_page_token)
        assert err.code() == grpc.StatusCode.ABORTED and "start again" in (err.details() or "")
        await op.close()


async def test_before_the_first_cycle_the_header_says_not_computed() -> None:
    server = grpc.aio.server()
    shardread_pb2_grpc.add_ShardReadServicer_to_server(
        ShardReadService(VerdictShelf(), ShardMetrics(CollectorRegistry())), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        header, rows = await inspect(port)
        assert header.cycle == 0 and header.total_needs == 0 and rows == []
    finally:
        await server.stop(None)


def _big_shelf(rows: int) -> VerdictShelf:
    """A shelf holding one real cycle's sheet of `rows` unmet needs of one cluster."""
    engine = Engine()
    demand = table(*(builders.need("c-a", 1000 - i, 1, arrival=i) for i in range(rows)))
    engine.cycle(builders.inventory(), demand, {"c-a"}, now=0.0)
    assert engine.verdicts is not None and engine.verdicts.last is not None
    shelf = VerdictShelf()
    shelf.put(engine.verdicts.last)
    return shelf


@asynccontextmanager
async def bare(shelf: VerdictShelf) -> AsyncIterator[int]:
    """The read service alone on a port."""
    server = grpc.aio.server()
    service = ShardReadService(shelf, ShardMetrics(CollectorRegistry()))
    shardread_pb2_grpc.add_ShardReadServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def test_a_page_holds_at_most_the_cap_whatever_the_limit() -> None:
    shelf = _big_shelf(MAX_PAGE_ROWS + 500)
    async with bare(shelf) as port:
        for limit in (0, 5000):
            header, rows = await inspect(port, limit=limit)
            assert len(rows) == MAX_PAGE_ROWS and header.next_page_token
            assert header.total_needs == MAX_PAGE_ROWS + 500
        header, rest = await inspect(port, token=header.next_page_token)
        assert len(rest) == 500 and not header.next_page_token
        assert rest[0].need.priority == rows[-1].need.priority - 1
        # A token of another run of the shard (its cycle numbers start over) is refused.
        other = encode_token(shelf.run + 1, header.cycle, 3)
        err = await refusal(port, token=other)
        assert err.code() == grpc.StatusCode.ABORTED and "earlier run" in (err.details() or "")


async def test_calls_beyond_the_cap_are_refused_and_a_slow_one_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hold = asyncio.Event()

    async def slow(*args: object) -> None:
        await hold.wait()

    monkeypatch.setattr(ShardReadService, "_serve", slow)
    monkeypatch.setattr("bigfleet.shard.runtime.inspect.MAX_CALLS_PER_CALLER", 1)
    async with bare(VerdictShelf()) as port:
        first = asyncio.create_task(inspect(port))
        await asyncio.sleep(0.2)
        err = await refusal(port)  # the same caller (host) again
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already has 1" in (err.details() or "")
        monkeypatch.setattr("bigfleet.shard.runtime.inspect.MAX_CALLS_PER_CALLER", 5)
        monkeypatch.setattr("bigfleet.shard.runtime.inspect.MAX_CALLS", 1)
        err = await refusal(port)  # everyone's calls together
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1 InspectNeeds calls are being served" in (err.details() or "")
        hold.set()
        with pytest.raises(IndexError):  # slow() wrote no header: no frames at all
            await first
        monkeypatch.setattr("bigfleet.shard.runtime.inspect.CALL_LIMIT_S", 0.2)
        hold.clear()
        err = await refusal(port)  # the first call's slot was given back
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "not taken within" in (err.details() or "")


# Under mutual TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identities.issue(
        tmp_path_factory.mktemp("certs"),
        "--cluster", "cluster-a", "--cluster", "cluster-b", "--shard", "shard-test",
    )  # fmt: skip


async def test_readonly_reads_all_a_cluster_only_its_own_and_a_shard_nothing(
    tmp_path: Path, certs: Path
) -> None:
    async with tls_rig(tmp_path, certs) as r:
        await r.start_shard(tls=identities.files(certs, "shard/shard-test"))
        assert r.shard is not None
        port = r.shard.port
        cred = {
            who: load(identities.files(certs, who))
            for who in ("readonly", "admin", "cluster/cluster-a", "shard/shard-test")
        }
        op = r.operator("cluster-a")
        op.stub = _stub(port, cred["cluster/cluster-a"], r)
        op.start()
        op.rollup(need(8))
        await rows_computed(r, 1)

        for who in ("readonly", "admin"):
            _, rows = await inspect(port, credentials=cred[who])
            assert [v.cluster_id for v in rows] == ["cluster-a"]
        _, own = await inspect(port, "cluster-a", credentials=cred["cluster/cluster-a"])
        assert len(own) == 1
        for cluster in ("cluster-b", ""):
            err = await refusal(port, cluster=cluster, credentials=cred["cluster/cluster-a"])
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "bigfleet://cluster/cluster-a" in (err.details() or "")
        err = await refusal(port, credentials=cred["shard/shard-test"])
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        await op.close()


def _stub(port: int, credentials: Credentials, r: Rig) -> object:
    from bigfleet.wire import shard_pb2_grpc

    ch = channel(f"127.0.0.1:{port}", credentials, options=GRPC_OPTIONS)
    r.channels.append(ch)
    return shard_pb2_grpc.ShardStub(ch)
