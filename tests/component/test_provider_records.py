"""A malformed provider record is refused on its own, over real gRPC: the fake provider's
List answers carry bad records among good ones, and the shard keeps working."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import generate_latest

from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.runtime.service import ShardService
from bigfleet.wire import provider_pb2 as pb
from tests.component.harness import eventually, need, rig

CONFIGURED = pb.MACHINE_STATE_CONFIGURED


def bad_records() -> list[pb.Machine]:
    """Records no shard can take, each for its own reason."""
    unknown_state = pb.Machine(id="bad-state", state=42, host=pb.HostRef(provider="x", ref="1"))  # type: ignore[arg-type]
    unknown_type = pb.Machine(
        id="bad-type",
        state=pb.MACHINE_STATE_IDLE,
        host=pb.HostRef(provider="x", ref="2"),
        capacity_type=9,  # type: ignore[arg-type]
    )
    huge = pb.Machine(
        id="bad-quantity",
        state=pb.MACHINE_STATE_IDLE,
        host=pb.HostRef(provider="x", ref="3"),
        instance_type="m6i.2xlarge",
        resources=pb.Resources(resources={"cpu": "1e999999", "memory": "8Ei"}),
    )
    nameless = pb.Machine(state=pb.MACHINE_STATE_IDLE, host=pb.HostRef(provider="x", ref="4"))
    return [unknown_state, unknown_type, huge, nameless]


def inject(
    fleet: FakeFleet, extra: list[pb.Machine], corrupt: dict[str, Callable[[pb.Machine], None]]
) -> None:
    """Wrap the fake's List: `extra` records appended, listed records corrupted by id."""
    real = fleet.list

    def listing(
        states: Iterable[int] = (), max_results: int = 0, since_revision: bytes = b""
    ) -> pb.MachineList:
        answer = real(states, max_results, since_revision)
        for record in answer.machines:
            if record.id in corrupt:
                corrupt[record.id](record)
        answer.machines.extend(extra)
        return answer

    fleet.list = listing  # type: ignore[method-assign]


def rejected(shard: ShardService, reason: str) -> float:
    value = shard.registry.get_sample_value(
        "bigfleet_shard_machines_rejected_total", {"reason": reason}
    )
    return value or 0.0


async def test_malformed_records_are_refused_alone_and_the_shard_keeps_working(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, idle=4) as r:
        extra = bad_records()
        corrupt: dict[str, Callable[[pb.Machine], None]] = {}
        inject(r.fleet, extra, corrupt)
        shard = await r.start_shard()
        await eventually(lambda: len(shard.state.inventory) == 4, what="the good machines")
        await eventually(lambda: shard.unready() is None, what="ready despite bad records")
        for reason in ("state", "capacity_type", "quantity", "id"):
            await eventually(
                lambda reason=reason: rejected(shard, reason) >= 1,  # type: ignore[misc]
                what=f"{reason} counted",
            )
        assert all(m.id.startswith("idle-") for m in shard.state.inventory.all())

        # The rest of the fleet serves demand as usual.
        op = r.operator("c1")
        op.start()
        op.rollup(need(16))  # two 8-CPU machines
        await eventually(
            lambda: (
                sum(m.state == CONFIGURED and m.cluster == "c1" for m in r.fleet.list().machines)
                == 2
            ),
            what="2 Configured for c1",
        )

        # A machine whose record turns bad keeps its last good state, through full passes.
        extra.clear()
        cleared = shard.reconciler.passes
        await eventually(lambda: shard.reconciler.passes >= cleared + 2, what="passes without")
        idle = sorted(m.id for m in shard.state.inventory.all() if m.state is MachineState.IDLE)
        kept = shard.state.inventory.get(idle[0])
        assert kept is not None
        before = rejected(shard, "quantity")
        passes = shard.reconciler.passes

        def bad_cpu(record: pb.Machine) -> None:
            record.resources.resources["cpu"] = "-8"

        corrupt[idle[0]] = bad_cpu
        shard.reconciler.full_next = True
        await eventually(
            lambda: shard.reconciler.passes >= passes + 12, what="a dozen passes, one full"
        )
        assert shard.state.inventory.get(idle[0]) == kept
        assert rejected(shard, "quantity") > before
        assert shard.unready() is None
        text = generate_latest(shard.registry).decode()
        assert 'bigfleet_shard_machines_rejected_total{reason="quantity"}' in text
        await op.close()
