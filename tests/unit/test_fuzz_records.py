"""Fuzz the shard's edge (hypothesis, bounded): provider records through reconcile,
roll-ups through `rollup_from_wire`. Nothing but the rejection path may come out."""

from __future__ import annotations

import asyncio
import math
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bigfleet import k8snames, penalty
from bigfleet.quantity import MAX_MILLI
from bigfleet.shard import codec
from bigfleet.shard.engine.cycle import Engine
from bigfleet.shard.engine.machine import InvalidMachine, MachineState, check
from bigfleet.shard.engine.needs import NeedsTable
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.wire import capacity_pb2
from bigfleet.wire import provider_pb2 as pb

T = TypeVar("T")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- adversarial values -----------------------------------------------------------------------

quantity_texts = st.one_of(
    st.sampled_from(
        [
            "8",
            "500m",
            "32Gi",
            "1e3",
            "2E3",
            "0",
            "1n",
            ".5",
            "1.",
            "-8",
            "-1",
            "1E",
            "2E",
            "1Ei",
            "8Ei",
            "1e100",
            "1e999999",
            "1e-999999",
            "1e2147483648",
            "",
            " 8",
            "8 ",
            "eight",
            "1e",
            "1ki",
            "NaN",
            "inf",
            "9" * 400,
        ]
    ),
    st.from_regex(
        r"[+-]?[0-9]{0,25}(\.[0-9]{0,6})?([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,7})?",
        fullmatch=True,
    ),
    st.text(max_size=8),
)
huge = st.sampled_from(["x" * 10_000, "a" * 1_025, "é" * 600, "a" * 253 + "/" + "b" * 64])
names = st.one_of(
    st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "pods", "CPU cores", "", "-x", "a/b/c"]),
    st.text(max_size=6),
    huge,
)
short_text = st.one_of(st.text(max_size=10), huge)
floats = st.one_of(
    st.sampled_from([0.0, 0.4, 1.0, -1.0, 2.0, math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
)
int32s = st.integers(-(2**31), 2**31 - 1)


def mostly(good: st.SearchStrategy[T], bad: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`good` four times in five: deep fields are reached past the first refusal."""
    return st.integers(0, 4).flatmap(lambda i: bad if i == 0 else good)


# -- provider records -------------------------------------------------------------------------


@st.composite
def machine_records(draw: st.DrawFn, machine_id: str | None = None) -> pb.Machine:
    record = pb.Machine(
        id=machine_id if machine_id is not None else draw(mostly(st.just("m-1"), short_text)),
        state=draw(mostly(st.sampled_from(list(MachineState)), int32s)),
        cluster=draw(st.one_of(st.just(""), st.just("c1"), short_text)),
        instance_type=draw(st.sampled_from(["m5", "", "x" * 300])),
        zone=draw(st.sampled_from(["zone-a", ""])),
        capacity_type=draw(mostly(st.integers(0, 4), int32s)),
        price_per_hour=draw(mostly(st.just(0.5), floats)),
        interruption_probability=draw(mostly(st.just(0.0), floats)),
        last_error=draw(st.sampled_from(["", "boom"])),
    )
    if draw(st.booleans()):
        record.host.provider = "fake"
        record.host.ref = draw(st.one_of(st.just("ref"), short_text))
    for field in (record.resources.resources, record.allocatable.resources):
        field.update(draw(st.dictionaries(names, mostly(st.just("8"), quantity_texts), max_size=3)))
    record.labels.update(draw(st.dictionaries(short_text, short_text, max_size=3)))
    metadata = st.one_of(short_text, st.sampled_from(["nan", "inf", "1e400", "9" * 5000, "-7"]))
    for key in (codec.META_PRIORITY, codec.META_INTERRUPTION, codec.META_RECLAMATION):
        if draw(st.booleans()):
            record.shard_metadata[key] = draw(metadata)
    return record


def good_record(machine_id: str, cpus: int) -> pb.Machine:
    return pb.Machine(
        id=machine_id,
        state=pb.MACHINE_STATE_IDLE,
        host=pb.HostRef(provider="fake", ref=machine_id),
        instance_type="m5",
        zone="zone-a",
        capacity_type=pb.CAPACITY_TYPE_ON_DEMAND,
        price_per_hour=0.4,
        resources=pb.Resources(resources={"cpu": str(cpus), "memory": "32Gi"}),
    )


def corrupt(record: pb.Machine, how: str) -> pb.Machine:
    bad = pb.Machine()
    bad.CopyFrom(record)
    match how:
        case "state":
            bad.state = 99  # type: ignore[assignment]
        case "unspecified":
            bad.state = pb.MACHINE_STATE_UNSPECIFIED
        case "capacity_type":
            bad.capacity_type = 17  # type: ignore[assignment]
        case "quantity":
            bad.resources.resources["cpu"] = "1Ei"
        case "negative":
            bad.allocatable.resources["cpu"] = "-8"
        case "garbage":
            bad.resources.resources["memory"] = "lots"
        case "price":
            bad.price_per_hour = math.nan
        case "structural":
            bad.ClearField("host")
    return bad


class ListingProvider:
    """A provider client whose List answers whatever the test set."""

    def __init__(self) -> None:
        self.records: list[pb.Machine] = []

    async def list(self, since_revision: bytes = b"") -> pb.MachineList:
        return pb.MachineList(machines=self.records, revision=b"1")


def reconciler() -> tuple[Reconciler, ListingProvider, ShardMetrics]:
    metrics = ShardMetrics(CollectorRegistry())
    state = ShardState("s", 1, metrics, Channels(metrics, 64))
    provider = ListingProvider()
    return Reconciler(state, {"fake": provider}), provider, metrics  # type: ignore[dict-item]


def rejected(metrics: ShardMetrics) -> dict[str, float]:
    counts = {}
    for metric in metrics.machines_rejected.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["reason"]] = sample.value
    return counts


def outcome(record: pb.Machine) -> str | None:
    """The rejection reason of a record, None when it is accepted."""
    try:
        check(codec.machine_from_wire(record))
    except InvalidMachine as err:
        assert err.reason in codec.MACHINE_REJECT_REASONS
        return err.reason
    return None


@FUZZ
@given(st.lists(machine_records(), max_size=12))
def test_random_provider_records_are_taken_or_rejected_never_raised(
    records: list[pb.Machine],
) -> None:
    rec, provider, metrics = reconciler()
    provider.records = records
    for _ in range(2):
        asyncio.run(rec.run())  # never raises
    assert rec.ready
    reasons = [outcome(r) for r in records]
    want: dict[str, float] = {}
    for reason in reasons:
        if reason is not None:
            want[reason] = want.get(reason, 0) + 2  # counted on every pass that lists it
    assert rejected(metrics) == want
    for machine in rec.state.inventory.all():
        check(machine)  # only valid machines are in the inventory
        assert all(0 <= v <= MAX_MILLI for v in machine.alloc.values())
    accepted = {r.id for r, reason in zip(records, reasons, strict=True) if reason is None}
    assert {m.id for m in rec.state.inventory.all()} == accepted


CORRUPTIONS = [
    "state",
    "unspecified",
    "capacity_type",
    "quantity",
    "negative",
    "garbage",
    "price",
    "structural",
]


@FUZZ
@given(
    st.lists(st.integers(1, 64), min_size=1, max_size=8),
    st.data(),
)
def test_a_corrupted_record_keeps_the_machines_last_good_state(
    sizes: list[int], data: st.DataObject
) -> None:
    rec, provider, metrics = reconciler()
    good = [good_record(f"m-{i}", cpus) for i, cpus in enumerate(sizes)]
    provider.records = good
    asyncio.run(rec.run())
    before = {m.id: m for m in rec.state.inventory.all()}
    assert len(before) == len(good)
    broken = data.draw(
        st.dictionaries(st.sampled_from([r.id for r in good]), st.sampled_from(CORRUPTIONS))
    )
    updated = [
        corrupt(r, broken[r.id]) if r.id in broken else good_record(r.id, 2 * sizes[i])
        for i, r in enumerate(good)
    ]
    provider.records = updated
    rec.full_next = True
    for _ in range(3):
        asyncio.run(rec.run())
        rec.full_next = True  # full passes: still listed, so never forgotten
    after = {m.id: m for m in rec.state.inventory.all()}
    assert set(after) == set(before)
    for machine_id, machine in after.items():
        if machine_id in broken:
            assert machine == before[machine_id]
        else:
            assert machine.alloc["cpu"] == 2 * before[machine_id].alloc["cpu"]
    assert sum(rejected(metrics).values()) == 3 * len(broken)
    assert rec.ready


# -- roll-ups ---------------------------------------------------------------------------------


@st.composite
def rollups(draw: st.DrawFn) -> capacity_pb2.ClusterCapacityNeeds:
    needs = []
    for _ in range(draw(st.integers(0, 4))):
        n = capacity_pb2.CapacityNeed(
            priority=draw(int32s),
            interruption_penalty_bucket=draw(mostly(st.integers(0, 27), st.integers(-3, 30))),
            reclamation_penalty_bucket=draw(mostly(st.integers(0, 27), st.integers(-3, 30))),
            group=draw(mostly(st.just("g"), short_text)),
        )
        resource_names = mostly(st.just("cpu"), names)
        values = mostly(st.sampled_from(["8", "16", "500m"]), quantity_texts)
        n.aggregate_resources.update(draw(st.dictionaries(resource_names, values, max_size=3)))
        n.min_unit.update(draw(st.dictionaries(resource_names, values, max_size=2)))
        for _ in range(draw(st.integers(0, 2))):
            n.requirements.add(
                key=draw(
                    st.one_of(
                        st.sampled_from(["rack", "node.kubernetes.io/instance-type"]), short_text
                    )
                ),
                operator=draw(st.one_of(st.integers(0, 6), int32s)),
                values=draw(st.lists(st.one_of(st.just("m5"), short_text), max_size=2)),
            )
        for _ in range(draw(st.integers(0, 1))):
            n.spread.add(
                topology_key=draw(mostly(st.just("topology.kubernetes.io/zone"), short_text)),
                max_skew=draw(mostly(st.integers(1, 3), int32s)),
                when_unsatisfiable=draw(mostly(st.integers(0, 2), st.integers(-1, 4))),
            )
        needs.append(n)
    cluster = draw(mostly(st.just("c1"), st.one_of(st.sampled_from(["", "C1", "c_1"]), short_text)))
    return capacity_pb2.ClusterCapacityNeeds(
        cluster_id=cluster, timestamp_unix_nanos=draw(st.integers(0, 2**62)), needs=needs
    )


@FUZZ
@given(rollups(), st.integers(1, 5))
def test_random_rollups_give_valid_needs_or_invalid_rollup(
    message: capacity_pb2.ClusterCapacityNeeds, cap: int
) -> None:
    try:
        needs = codec.rollup_from_wire(message, max_needs=cap)
    except codec.InvalidRollup:
        return  # the only way out besides valid needs
    assert k8snames.is_dns1123_subdomain(message.cluster_id)
    assert len(needs) <= cap
    for need in needs:
        assert need.cluster == message.cluster_id
        assert -(2**31) <= need.priority < 2**31
        for bucket in (need.profile.interruption_bucket, need.profile.reclamation_bucket):
            assert 0 <= bucket <= penalty.PINNED
        assert all(0 <= v <= MAX_MILLI for v in need.aggregate.values())
        for name, unit in need.min_unit.items():
            assert 0 < unit <= need.aggregate[name]
        assert all(k8snames.is_label_key(name) for name in need.aggregate)
        for r in need.profile.requirements:
            assert k8snames.is_label_key(r.key)
            assert all(k8snames.is_label_value(v) for v in r.values)
        for s in need.profile.spread:
            assert s.max_skew >= 1 and k8snames.is_label_key(s.topology_key)
        assert len(need.group.encode()) <= codec.MAX_GROUP_BYTES
    # And the engine takes them.
    table = NeedsTable()
    table.replace(message.cluster_id, needs)
    rec, provider, _ = reconciler()
    provider.records = [good_record(f"m-{i}", 8) for i in range(4)]
    asyncio.run(rec.run())
    Engine(EngineSettings(rails=RailSettings(reclaim_cap_fraction=0))).cycle(
        rec.state.inventory, table, {message.cluster_id}, now=0
    )


@FUZZ
@given(st.lists(st.sampled_from(["8", "16", "1e3", "512Mi"]), min_size=1, max_size=3))
def test_accepted_rollups_can_be_valid(cpus: list[str]) -> None:
    # The generator above mostly builds refusals; valid roll-ups must pass too.
    message = capacity_pb2.ClusterCapacityNeeds(
        cluster_id="c1",
        needs=[
            capacity_pb2.CapacityNeed(aggregate_resources={"cpu": c}, min_unit={"cpu": c})
            for c in cpus
        ],
    )
    assert len(codec.rollup_from_wire(message)) == len(cpus)
