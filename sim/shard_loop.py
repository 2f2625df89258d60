"""SimShard: the shard's decide-and-act loop, in-process and synchronous, for the simulator.

Each cycle reconciles the inventory from the fake provider (through the same
wire codec as the real shard), runs the real engine, and executes what the
rails let through directly against the fake, fencing token and all. Time is
simulated: every cycle advances the clock by the cycle interval, so no
wall-clock value ever steers a decision.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bigfleet.errors import BigFleetError
from bigfleet.fencing import FencingToken, SequenceCounter
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.shard import codec
from bigfleet.shard.engine.cycle import CycleResult, Engine
from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import InvalidMachine, MachineState
from bigfleet.shard.engine.needs import NeedsTable
from bigfleet.shard.engine.rails import RailSettings, RollupQuarantine
from bigfleet.wire import capacity_pb2

CYCLE_INTERVAL_S = 10.0


@dataclass
class Tally:
    """What the loop did, for reports."""

    actions: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    rejected_machines: int = 0
    cycles: int = 0


class SimShard:
    def __init__(
        self, fleet: FakeFleet, *, shard_id: str, settings: RailSettings | None = None
    ) -> None:
        self.fleet = fleet
        self.shard_id = shard_id
        self.epoch = 1
        self.inventory = Inventory()
        self.table = NeedsTable()
        self.engine = Engine(settings or RailSettings(reclaim_cap_fraction=0))
        self.quarantine = RollupQuarantine()
        self.reported: set[str] = set()
        self.now = 0.0
        self.tally = Tally()
        self._sequence = SequenceCounter()
        self._cursor = b""
        self.last: CycleResult | None = None

    def rollup(self, message: capacity_pb2.ClusterCapacityNeeds) -> bool:
        """Ingest a roll-up as the shard would; False when quarantine held it."""
        needs = codec.rollup_from_wire(message)
        self.reported.add(message.cluster_id)
        if not self.quarantine.admit(message.cluster_id, len(needs)):
            return False
        self.table.replace(message.cluster_id, needs)
        return True

    def reconcile(self) -> None:
        listing = self.fleet.list(since_revision=self._cursor)
        for wire_machine in listing.machines:
            try:
                self.inventory.upsert(codec.machine_from_wire(wire_machine), self.now)
            except InvalidMachine:
                self.tally.rejected_machines += 1  # keep the last good record
        self._cursor = listing.revision
        if len(self.inventory) != len(self.fleet):  # machines vanished: resynchronise fully
            present = {m.id for m in self.fleet.list().machines}
            for machine in self.inventory.all():
                if machine.id not in present:
                    self.inventory.remove(machine.id)

    def cycle(self) -> list[Action]:
        """One decision cycle; returns the actions that were carried out, in order."""
        self.reconcile()
        result = self.engine.cycle(self.inventory, self.table, self.reported, self.now)
        self.last = result
        for action in result.rails.execute:
            self._execute(action)
        self.reconcile()
        self.now += CYCLE_INTERVAL_S
        self.tally.cycles += 1
        return result.rails.execute

    def _token(self) -> FencingToken:
        return FencingToken(
            shard_id=self.shard_id, epoch=self.epoch, sequence=self._sequence.next()
        )

    def _execute(self, action: Action) -> None:
        self.tally.actions[action.kind.value] += 1
        try:
            match action.kind:
                case ActionKind.PROVISION | ActionKind.BOOTSTRAP:
                    assert action.need is not None
                    if action.kind is ActionKind.PROVISION:
                        self.fleet.create(action.machine_id, self._token())
                    blob = f"join {action.cluster} as {action.machine_id}".encode()
                    self.fleet.configure(
                        action.machine_id,
                        action.cluster,
                        blob,
                        codec.attribution_metadata(action.need),
                        self._token(),
                    )
                case ActionKind.RECLAIM | ActionKind.PREEMPT:
                    self.fleet.drain(action.machine_id, action.grace_seconds, self._token())
                case ActionKind.DELETE:
                    self.fleet.delete(action.machine_id, self._token())
        except BigFleetError as err:
            self.tally.failures[f"{action.kind.value}:{err.code.name}"] += 1

    def state(self) -> dict[str, object]:
        """The trace's inventory summary (validation.md §1.5 key order)."""
        by_state = dict(sorted((s.title, n) for s, n in self.inventory.count_by_state().items()))
        summary: dict[str, object] = {"total": len(self.inventory), "by_state": by_state}
        per_cluster = self.inventory.configured_per_cluster()
        if per_cluster:
            summary["configured_per_cluster"] = dict(sorted(per_cluster.items()))
        return summary

    def cost_per_hour(self) -> float:
        """Hourly price of every machine holding hardware."""
        return sum(
            m.price_per_hour
            for m in self.inventory.all()
            if m.state not in (MachineState.SPECULATIVE, MachineState.FAILED)
        )
