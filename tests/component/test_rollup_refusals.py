"""Each bad roll-up the issue found ends its own stream with INVALID_ARGUMENT naming the field.

Before, some of these ended the stream with OK and no count (an `E` read as an
exponent, an overflowing `1e999999`), or were accepted (`-8` CPUs, `1e100` CPUs,
which made one cluster bootstrap every Idle machine). Over real gRPC, against a
real shard and the fake provider: the refused cluster gets no machine, the refusal
is counted, and a well-behaved cluster is still served afterwards.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from bigfleet.wire import capacity_pb2, provider_pb2
from tests.component.harness import eventually, need, rig

CONFIGURED = provider_pb2.MACHINE_STATE_CONFIGURED
ZONE = "topology.kubernetes.io/zone"


def _cpu(aggregate: str, unit: str = "8") -> capacity_pb2.CapacityNeed:
    bad = need(8)
    bad.aggregate_resources["cpu"] = aggregate
    bad.min_unit["cpu"] = unit
    return bad


def _spread(skew: int) -> capacity_pb2.CapacityNeed:
    return need(
        8,
        spread=[
            capacity_pb2.TopologySpread(
                topology_key=ZONE,
                max_skew=skew,
                when_unsatisfiable=capacity_pb2.TopologySpread.WHEN_UNSATISFIABLE_DO_NOT_SCHEDULE,
            )
        ],
    )


# (what the issue saw, the need, a text the refusal must contain)
CASES = [
    ("1Ei CPUs", _cpu("1Ei"), "aggregate_resources"),
    ("2E CPUs", _cpu("2E"), "aggregate_resources"),
    ("8Ei CPUs", _cpu("8Ei"), "aggregate_resources"),
    ("1e999999 CPUs", _cpu("1e999999"), "aggregate_resources"),
    ("-8 CPUs", _cpu("-8"), "aggregate_resources"),
    ("1e100 CPUs", _cpu("1e100"), "aggregate_resources"),
    ("min_unit 0", _cpu("8", "0"), "min_unit"),
    ("negative min_unit", _cpu("8", "-1"), "min_unit"),
    ("min_unit above the aggregate", _cpu("8", "16"), "min_unit"),
    ("negative max_skew", _spread(-1), "spread[0].max_skew"),
    ("a 10 MB group", need(8, group="g" * (10 * 1024 * 1024)), "group"),
]


async def test_every_bad_rollup_ends_only_its_stream_naming_the_field(tmp_path: Path) -> None:
    async with rig(tmp_path, idle=2) as r:
        shard = await r.start_shard()
        refused = shard.metrics.session_rejected.labels("invalid_rollup")
        for i, (what, bad, field) in enumerate(CASES):
            op = r.operator(f"bad-{i}")
            op.start()
            op.rollup(bad)
            await eventually(lambda op=op: op.status is not None, what=f"{what}: stream ended")
            assert op.status == grpc.StatusCode.INVALID_ARGUMENT, what
            assert f"needs[0].{field}" in op.details, (what, op.details)
            assert len(op.details) < 1024, what  # a 10 MB value is never echoed back
            assert shard.state.table.rows(f"bad-{i}") == (), what
        assert refused._value.get() == len(CASES)
        assert not [m for m in r.fleet.list().machines if m.state == CONFIGURED]

        good = r.operator("good")
        good.start()
        good.rollup(need(8))
        await eventually(
            lambda: any(
                m.state == CONFIGURED and m.cluster == "good" for m in r.fleet.list().machines
            ),
            what="a well-behaved cluster still served",
        )
        await good.close()
