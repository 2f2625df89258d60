"""Two shards on one fake provider carry out the coordinator's instructions.

Real gRPC to the provider, real shard runtimes; the instructions are handed
to each shard's handler the way its coordinator client would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bigfleet.wire import GRPC_OPTIONS, provider_pb2, shard_pb2_grpc
from bigfleet.wire import coordinator_pb2 as pb
from providers_fake.config import FleetConfig, LatencyConfig, Pool
from providers_fake.fleet import FakeFleet
from providers_fake.server import start as start_provider
from shard.engine.machine import ZONE_KEY, MachineState
from shard.runtime.instructions import DRAINING, RELEASED, ids_in
from shard.runtime.service import ShardService, ShardSettings
from tests.component.harness import Operator, eventually, need

Outcome = pb.InstructAck.Outcome
_ids = itertools.count(1)


def instruct(**payload: object) -> pb.CoordinatorInstruction:
    return pb.CoordinatorInstruction(
        coordinator_term=1, instruction_id=f"1-{next(_ids)}", **payload
    )  # type: ignore[arg-type]


def operator(shard: ShardService, cluster: str) -> Operator:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{shard.port}", options=GRPC_OPTIONS)
    return Operator(cluster, shard_pb2_grpc.ShardStub(channel))


def domain(zone: str) -> pb.CoordinatorInstruction:
    return instruct(assign_domain=pb.AssignDomain(topology_key=ZONE_KEY, topology_value=zone))


@dataclass
class Pair:
    fleet: FakeFleet
    provider_address: str
    root: Path
    shards: dict[str, ShardService]
    tasks: dict[str, asyncio.Task[None]]

    async def start(self, shard_id: str) -> ShardService:
        settings = ShardSettings(
            shard_id=shard_id,
            listen="127.0.0.1:0",
            providers=(("fake", self.provider_address),),
            data_dir=self.root / shard_id,
            metrics_addr="0",
            cycle_interval_s=0.2,
            min_cycle_gap_s=0.05,
            bootstrap_timeout_s=2.0,
            transfer_batch=2,
        )
        shard = ShardService(settings)
        started = asyncio.Event()
        self.tasks[shard_id] = asyncio.create_task(shard.run(started))
        await asyncio.wait_for(started.wait(), 10)
        self.shards[shard_id] = shard
        return shard

    async def stop(self, shard_id: str) -> None:
        task = self.tasks.pop(shard_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def owned(self, shard_id: str) -> set[str]:
        return {m.id for m in self.shards[shard_id].inventory.all()}


@asynccontextmanager
async def pair(tmp_path: Path, latency: LatencyConfig | None = None) -> AsyncIterator[Pair]:
    config = FleetConfig(
        latency=latency or LatencyConfig(),
        pools=(
            Pool(prefix="a", count=4, state="idle", zone="zone-a"),
            Pool(prefix="b", count=2, state="idle", zone="zone-b"),
            Pool(prefix="bs", count=2, state="speculative", zone="zone-b"),
        ),
    )
    fleet = config.build(time.monotonic)
    server, port = await start_provider(fleet, "127.0.0.1:0")
    the_pair = Pair(fleet, f"127.0.0.1:{port}", tmp_path, {}, {})
    try:
        for shard_id, zone in (("donor", "zone-a"), ("recipient", "zone-b")):
            shard = await the_pair.start(shard_id)
            outcome, _ = await shard.instructions.handle(domain(zone))
            assert outcome == Outcome.OUTCOME_ACCEPTED
        yield the_pair
    finally:
        for shard_id in list(the_pair.tasks):
            await the_pair.stop(shard_id)
        await server.stop(None)


async def test_domains_split_one_provider_between_shards(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        await eventually(lambda: p.owned("donor") == {f"a-{i}" for i in range(4)}, what="a-*")
        await eventually(lambda: p.owned("recipient") == {"b-0", "b-1", "bs-0", "bs-1"}, what="b-*")


async def test_idle_machines_move_donor_first_and_stay_moved_after_a_restart(
    tmp_path: Path,
) -> None:
    async with pair(tmp_path) as p:
        donor, recipient = p.shards["donor"], p.shards["recipient"]
        await eventually(lambda: len(p.owned("donor")) == 4, what="donor inventory")
        release = instruct(
            transfer_ownership=pb.TransferOwnership(from_shard_id="donor", to_shard_id="recipient")
        )
        outcome, reason = await donor.instructions.handle(release)
        assert outcome == Outcome.OUTCOME_ACCEPTED
        moved = ids_in(reason, RELEASED)
        assert len(moved) == 2  # the batch size
        assert not set(moved) & p.owned("donor")

        # A redelivery gets the same machines, not two more.
        outcome, again = await donor.instructions.handle(release)
        assert outcome == Outcome.OUTCOME_ACCEPTED
        assert again.startswith("duplicate-redelivery") and ids_in(again, RELEASED) == moved

        claim = instruct(
            transfer_ownership=pb.TransferOwnership(
                machine_ids=moved, from_shard_id="donor", to_shard_id="recipient"
            )
        )
        outcome, _ = await recipient.instructions.handle(claim)
        assert outcome == Outcome.OUTCOME_ACCEPTED
        assert set(moved) <= p.owned("recipient")

        # Several full reconciles later, and across a donor restart, nothing moved back.
        await p.stop("donor")
        await p.start("donor")
        await eventually(lambda: len(p.owned("donor")) == 2, what="restarted donor inventory")
        await asyncio.sleep(0.5)
        assert not p.owned("donor") & p.owned("recipient")
        assert p.owned("donor") | p.owned("recipient") == {m.id for m in p.fleet.list().machines}


async def test_speculative_slots_move_and_the_recipient_provisions_them(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        # Here the zone-b shard gives its quota slots to the zone-a shard.
        giver, taker = p.shards["recipient"], p.shards["donor"]
        await eventually(lambda: len(p.owned("recipient")) == 4, what="zone-b inventory")
        outcome, reason = await giver.instructions.handle(
            instruct(reassign_speculative=pb.ReassignSpeculative())
        )
        assert outcome == Outcome.OUTCOME_ACCEPTED
        slots = ids_in(reason, RELEASED)
        assert sorted(slots) == ["bs-0", "bs-1"]
        await taker.instructions.handle(
            instruct(reassign_speculative=pb.ReassignSpeculative(machine_ids=slots))
        )
        # The zone-a shard's demand outgrows its 4 idle machines: it creates the slots.
        op = operator(taker, "c1")
        op.start()
        op.rollup(need(48))
        configured = provider_pb2.MACHINE_STATE_CONFIGURED
        await eventually(
            lambda: all(m.state == configured for m in p.fleet.list().machines if m.id in slots),
            what="both slots created and configured by their new owner",
        )
        await op.close()


async def test_cross_shard_drain_hands_over_machines_only_once_idle(tmp_path: Path) -> None:
    async with pair(tmp_path, LatencyConfig(draining=0.5)) as p:
        donor, recipient = p.shards["donor"], p.shards["recipient"]
        op = operator(donor, "low")
        op.start()
        op.rollup(need(32, priority=10))  # all four zone-a machines, low priority
        await eventually(
            lambda: len(donor.inventory.in_state(MachineState.CONFIGURED)) == 4
            and not donor.state.in_flight,
            what="zone-a bound to the low-priority cluster",
        )
        drain = instruct(cross_shard_drain=pb.CrossShardDrain(preemptor_priority=1000))
        outcome, reason = await donor.instructions.handle(drain)
        assert outcome == Outcome.OUTCOME_ACCEPTED, reason
        victims = ids_in(reason, DRAINING)
        assert len(victims) == 2
        handover = instruct(
            transfer_ownership=pb.TransferOwnership(
                machine_ids=victims, from_shard_id="donor", to_shard_id="recipient"
            )
        )
        outcome, reason = await donor.instructions.handle(handover)
        assert outcome == Outcome.OUTCOME_FAILED and "still draining" in reason
        # The donor's own cluster still wants them, yet they leave the moment they are Idle.
        await eventually(lambda: not set(victims) & p.owned("donor"), what="victims released")
        outcome, reason = await donor.instructions.handle(handover)
        assert outcome == Outcome.OUTCOME_ACCEPTED
        assert sorted(ids_in(reason, RELEASED)) == sorted(victims)
        await recipient.instructions.handle(
            instruct(
                transfer_ownership=pb.TransferOwnership(
                    machine_ids=victims, from_shard_id="donor", to_shard_id="recipient"
                )
            )
        )
        await asyncio.sleep(0.5)  # several donor cycles with unmet low-priority demand
        assert set(victims) <= p.owned("recipient")
        assert not set(victims) & p.owned("donor")
        await op.close()


async def test_unknown_and_misaddressed_instructions_are_refused(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        shard = p.shards["donor"]
        outcome, _ = await shard.instructions.handle(instruct())
        assert outcome == Outcome.OUTCOME_REJECTED_INVALID
        stray = instruct(
            transfer_ownership=pb.TransferOwnership(from_shard_id="x", to_shard_id="y")
        )
        outcome, reason = await shard.instructions.handle(stray)
        assert outcome == Outcome.OUTCOME_REJECTED_INVALID and "neither" in reason
