"""No machine is ever owned by two shards, whatever order rebalancing's messages take.

The real pieces on both sides: the coordinator's Rebalancer and instruction
queue on the embedded store, three shards' instruction handlers, ownership
files and reconcilers, one fake provider. Hypothesis picks the order of
sweeps, deliveries, lost replies, drains finishing, reconciles, shard
restarts and coordinator failovers, and the invariant is checked after
every step.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bigfleet.coordinator.embedded import EmbeddedElection, EmbeddedState
from bigfleet.coordinator.instructions import InstructionQueue
from bigfleet.coordinator.rebalance import Rebalancer, RebalanceSettings
from bigfleet.coordinator.store import Store
from bigfleet.fencing import FencingToken
from bigfleet.providers_fake.fleet import FakeFleet, Slot
from bigfleet.shard import codec
from bigfleet.shard.engine.machine import ZONE_KEY
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.instructions import InstructionHandler
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.ownership import Ownership
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.wire import capacity_pb2, provider_pb2
from bigfleet.wire import coordinator_pb2 as pb

SHARDS = ("s0", "s1", "s2")
UNFENCED = FencingToken(shard_id="", epoch=0, sequence=0)
EAGER = RebalanceSettings(min_age_cycles=0, drain_age_cycles=0, cooldown_s=0)


class InProcessProvider:
    """The provider client surface a shard's reconcile and claims use, on a FakeFleet."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet

    async def list(self, since_revision: bytes = b"") -> provider_pb2.MachineList:
        return self.fleet.list()

    async def get(self, machine_id: str) -> provider_pb2.Machine:
        return self.fleet.get(machine_id)


def make_fleet() -> FakeFleet:
    fleet = FakeFleet(name="fake", clock=time.monotonic)
    for shard_index in range(len(SHARDS)):
        for i in range(4):
            fleet.add(
                Slot(
                    id=f"m{shard_index}-{i}",
                    state=provider_pb2.MACHINE_STATE_IDLE,
                    instance_type="m6i.2xlarge",
                    zone=f"zone-{shard_index}",
                    capacity_type=provider_pb2.CAPACITY_TYPE_ON_DEMAND,
                    price_per_hour=0.4,
                    interruption_probability=0.0,
                    resources={"cpu": "8"},
                )
            )
    for shard_index in range(len(SHARDS)):  # half of each shard's machines serve a cluster
        for i in range(2):
            fleet.configure(
                f"m{shard_index}-{i}",
                f"c{shard_index}",
                b"",
                {codec.META_PRIORITY: "10"},
                UNFENCED,
            )
    return fleet


class Shard:
    def __init__(self, shard_id: str, root: Path, fleet: FakeFleet) -> None:
        metrics = ShardMetrics(CollectorRegistry())
        ownership = Ownership.load(root / f"{shard_id}.json")
        if not ownership.domains:  # first start: the shard's own zone
            ownership.domains.add((ZONE_KEY, f"zone-{SHARDS.index(shard_id)}"))
        self.state = ShardState(shard_id, 1, metrics, Channels(metrics, 64), ownership=ownership)
        providers = {"fake": InProcessProvider(fleet)}
        self.reconciler = Reconciler(self.state, providers)  # type: ignore[arg-type]
        self.executor = Executor(
            inventory=self.state.inventory,
            record=self.state.record,
            in_flight=self.state.in_flight,
            channels=self.state.channels,
            metrics=metrics,
            providers=providers,  # type: ignore[arg-type]
            owners=self.reconciler.owner,
        )
        self.handler = InstructionHandler(self.state, self.reconciler, self.executor, batch=2)


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.fleet = make_fleet()
        self.shards = {s: Shard(s, root, self.fleet) for s in SHARDS}
        self.embedded = EmbeddedState(root / "coordinator.json")
        self.election = EmbeddedElection(self.embedded, "c")
        self.store: Store | None = None
        self.queue = InstructionQueue(0)
        self.rebalancer: Rebalancer | None = None
        self.lost_acks: list[tuple[str, list[pb.InstructAck]]] = []

    @classmethod
    async def started(cls, root: Path) -> World:
        """A leader, and every shard's first reconcile done."""
        world = cls(root)
        await world.lead()
        for shard in world.shards.values():
            await shard.reconciler.run()
        return world

    async def lead(self) -> None:
        """A (new) leadership: fresh queue and views, open moves resumed from the store."""
        leadership = await self.election.campaign()
        self.store = self.election.store_for(leadership.term, self.embedded.prefix)
        self.queue = InstructionQueue(leadership.term)
        self.rebalancer = Rebalancer(
            EAGER,
            send=lambda shard, i, iid: self.queue.send(shard, i, iid),
            cancel=self.queue.cancel,
        )
        await self.rebalancer.resume(self.store)
        self.election._leading = False  # let the next failover campaign again

    def report(self, shard_id: str, priority: int) -> pb.ShardReport:
        inventory = self.shards[shard_id].state.inventory
        free = sum(1 for m in inventory.all() if m.state == 3)
        shortfalls = []
        if priority:
            shortfalls.append(pb.Shortfall(priority=priority, age_cycles=3))
            shortfalls[0].requirements.append(
                capacity_pb2.NodeSelectorRequirement(
                    key="k", operator=capacity_pb2.NodeSelectorRequirement.OPERATOR_IN
                )
            )
        return pb.ShardReport(
            shard_id=shard_id,
            summary=pb.ShardSummary(total_machines=len(inventory), free_machines=free),
            shortfalls=shortfalls,
        )

    async def step(self, op: str, shard_id: str, priority: int) -> None:
        assert self.store is not None and self.rebalancer is not None
        shard = self.shards[shard_id]
        if op == "report":
            self.rebalancer.observe(self.report(shard_id, priority))
        elif op == "sweep":
            await self.rebalancer.sweep(self.store)
        elif op in ("deliver", "lose-reply"):
            acks = []
            for instruction in self.queue.for_shard(shard_id):
                outcome, reason = await shard.handler.handle(instruction)
                acks.append(
                    pb.InstructAck(
                        instruction_id=instruction.instruction_id, outcome=outcome, reason=reason
                    )
                )
            if op == "deliver":
                self.queue.acknowledge(shard_id, acks)
                await self.rebalancer.acknowledged(self.store, shard_id, acks)
        elif op == "drain-finishes":
            while not shard.executor.queue.empty():
                action = shard.executor.queue.get_nowait()
                self.fleet.drain(action.machine_id, 0, UNFENCED)  # no latency: Idle at once
                shard.state.in_flight.discard(action.machine_id)
        elif op == "reconcile":
            await shard.reconciler.run()
        elif op == "restart-shard":
            self.shards[shard_id] = Shard(shard_id, self.root, self.fleet)
            await self.shards[shard_id].reconciler.run()
        elif op == "failover":
            await self.lead()
        elif op == "round":  # everyone reports (only `shard_id` short), a sweep, every reply
            for other in SHARDS:
                self.rebalancer.observe(self.report(other, priority if other == shard_id else 0))
            await self.rebalancer.sweep(self.store)
            for other in SHARDS:
                await self.step("deliver", other, 0)

    def owners(self) -> dict[str, list[str]]:
        machines = [codec.machine_from_wire(m) for m in self.fleet.list().machines]
        return {
            m.id: [s for s, shard in self.shards.items() if shard.state.ownership.owns(m)]
            for m in machines
        }


OPS = st.sampled_from(
    [
        "round",
        "round",
        "report",
        "sweep",
        "deliver",
        "deliver",
        "lose-reply",
        "drain-finishes",
        "reconcile",
        "restart-shard",
        "failover",
    ]
)
STEPS = st.lists(st.tuples(OPS, st.sampled_from(SHARDS), st.sampled_from([0, 5, 50])), max_size=60)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_no_machine_is_ever_owned_by_two_shards(steps: list[tuple[str, str, int]]) -> None:
    async def play() -> None:
        with tempfile.TemporaryDirectory() as root:
            world = await World.started(Path(root))
            for op, shard_id, priority in steps:
                await world.step(op, shard_id, priority)
                owners = world.owners()
                doubled = {m: s for m, s in owners.items() if len(s) > 1}
                assert not doubled, f"after {op} on {shard_id}: {doubled}"
                held: dict[str, str] = {}
                for s, shard in world.shards.items():
                    for m in shard.state.inventory.all():
                        assert m.id not in held, f"{m.id} in {held.get(m.id)} and {s}"
                        held[m.id] = s

    asyncio.run(play())


def test_a_move_completes_when_every_message_arrives() -> None:
    """The same world, played in order: machines really do change hands."""

    async def play() -> None:
        with tempfile.TemporaryDirectory() as root:
            world = await World.started(Path(root))
            await world.step("report", "s0", 50)
            for other in ("s1", "s2"):
                await world.step("report", other, 0)
            await world.step("sweep", "s0", 0)
            for shard_id in ("s1", "s2", "s0"):  # donor answers, then recipient claims
                await world.step("deliver", shard_id, 0)
            owners = world.owners()
            assert sum(1 for s in owners.values() if s == ["s0"]) == 6  # 4 of its own + 2
            assert all(len(s) == 1 for s in owners.values())

    asyncio.run(play())
