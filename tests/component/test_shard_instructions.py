"""Two shards on one fake provider carry out the coordinator's instructions.

Real gRPC to the provider, real shard runtimes; the instructions are handed
to each shard's handler the way its coordinator client would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bigfleet.handover import DRAINING, RELEASED, ids_in
from bigfleet.providers_fake.config import LatencyConfig
from bigfleet.shard.engine.machine import ZONE_KEY, MachineState
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import provider_pb2
from tests.component.harness import Pair, eventually, need, operator, two_shards

Outcome = pb.InstructAck.Outcome
_ids = itertools.count(1)


def instruct(**payload: object) -> pb.CoordinatorInstruction:
    return pb.CoordinatorInstruction(
        coordinator_term=1, instruction_id=f"1-{next(_ids)}", **payload
    )  # type: ignore[arg-type]


def domain(zone: str) -> pb.CoordinatorInstruction:
    return instruct(assign_domain=pb.AssignDomain(topology_key=ZONE_KEY, topology_value=zone))


@asynccontextmanager
async def pair(tmp_path: Path, latency: LatencyConfig | None = None) -> AsyncIterator[Pair]:
    async with two_shards(tmp_path, latency) as the_pair:
        for shard_id, zone in (("donor", "zone-a"), ("recipient", "zone-b")):
            outcome, _ = await the_pair.shards[shard_id].instructions.handle(domain(zone))
            assert outcome == Outcome.OUTCOME_ACCEPTED
        yield the_pair


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
            lambda: (
                len(donor.inventory.in_state(MachineState.CONFIGURED)) == 4
                and not donor.state.in_flight
            ),
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
