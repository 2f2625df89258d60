"""ShardState: what one shard process knows, and the single write path into its inventory.

Every inventory write goes through `record`, which validates the machine,
counts rejected records, and tells the bound cluster's operator about any
state change with a NodeStateUpdate (captured before a binding is cleared).

A cluster the channels forget (gone longer than the retention) loses what the
shard keeps for it here: its demand, its quarantine counters, its first
sightings and its label series. Its bound machines stay, and the engine does
not reclaim them before the cluster reports again (`reported`).

While a cycle decides in the engine's thread (`begin_cycle` to `end_cycle`),
what it reads (inventory, demand table, reporting clusters) holds still.
Writers on the event loop wait for `settled()` first; a roll-up does not
wait: it is acknowledged at once and committed when the cycle ends, the
latest per cluster. An inventory write that arrives anyway (a write path
that did not wait: a bug) is applied when the cycle ends, counted and
logged, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import grpc

from bigfleet import quantity
from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.shard import codec
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import (
    InvalidMachine,
    Machine,
    MachineState,
    check,
    labels_with_topology,
)
from bigfleet.shard.engine.needs import Need, NeedsTable
from bigfleet.shard.engine.rails import RollupQuarantine
from bigfleet.shard.runtime.channels import BadFrame, Channels
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.ownership import Ownership
from bigfleet.wire import capacity_pb2, provider_pb2, shard_pb2

log = logging.getLogger(__name__)
DECODE_SLICE = 500  # needs a Session decodes between two turns of the event loop (~15 ms)


def node_state_update(m: Machine, cluster: str) -> shard_pb2.ShardMessage:
    update = shard_pb2.NodeStateUpdate(
        supersedes_key=f"node:{m.id}",
        machine_id=m.id,
        cluster_id=cluster,
        state=m.state.value,  # type: ignore[arg-type]
        node_name=m.id,  # the fake and our operators name nodes after machines
        provider_id=m.host,
        last_error=m.last_error,
        labels=labels_with_topology(m),
        resources=provider_pb2.Resources(resources=codec.vector_to_wire(m.alloc)),
    )
    return shard_pb2.ShardMessage(node_state_update=update)


def _logged(write: Callable[[], None], message: str, cluster: str) -> None:
    try:
        write()
    except Exception:
        log.exception(message, extra={"cluster": cluster} if cluster else None)


def _forget_quarantine(quarantine: RollupQuarantine, cluster: str) -> None:
    """Drop the quarantine's counters for `cluster` (RollupQuarantine has no such method
    yet; it keeps them in these two dicts)."""
    quarantine._accepted_rows.pop(cluster, None)
    quarantine._held.pop(cluster, None)


@dataclass
class ShardState:
    shard_id: str
    epoch: int
    metrics: ShardMetrics
    channels: Channels
    quarantine_enabled: bool = True
    max_needs_per_rollup: int = codec.MAX_NEEDS_PER_ROLLUP  # --max-needs-per-rollup
    inventory: Inventory = field(default_factory=Inventory)
    table: NeedsTable = field(default_factory=NeedsTable)
    quarantine: RollupQuarantine = field(default_factory=RollupQuarantine)
    reported: set[str] = field(default_factory=set)  # clusters with a roll-up since start
    in_flight: set[str] = field(default_factory=set)  # machines with an action running
    ownership: Ownership = field(default_factory=Ownership)
    leaving: set[str] = field(default_factory=set)  # draining to be handed to another shard
    first_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    on_demand: Callable[[], None] = lambda: None  # a roll-up changed demand: cycle early
    clock: Clock = REAL_CLOCK  # stamps inventory writes and first sightings of demand

    deciding: bool = field(default=False, init=False)  # a cycle reads the state now
    _settled: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _late: list[Callable[[], None]] = field(default_factory=list, init=False)
    # Committed when the cycle ends, in arrival order: a cluster's latest needs with when
    # they arrived, or None for a cluster forgotten meanwhile.
    _waiting: dict[str, tuple[list[Need], float] | None] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.channels.on_forget(self.forget)
        self._settled.set()

    # -- a cycle deciding in the engine's thread ---------------------------------------------

    def begin_cycle(self) -> None:
        """Until `end_cycle`, inventory, table and reported are the cycle's to read."""
        self.deciding = True
        self._settled.clear()

    def end_cycle(self) -> None:
        """Apply what arrived while the cycle decided, in order, then let writers go on.
        One write or commit failing (a bug of ours) is logged and loses no other."""
        self.deciding = False
        late, self._late = self._late, []
        waiting, self._waiting = self._waiting, {}
        try:
            for write in late:
                _logged(write, "an inventory write held for a cycle failed", "")
            for cluster, arrived in waiting.items():
                _logged(
                    partial(self._drop_demand, cluster)
                    if arrived is None
                    else partial(self._commit, cluster, *arrived),
                    "a roll-up acknowledged during a cycle failed to commit",
                    cluster,
                )
        finally:
            self._settled.set()

    async def settled(self) -> None:
        """Return when no cycle is deciding. A write made right after, with no await in
        between, cannot overlap a cycle: cycles begin on this event loop too."""
        while self.deciding:
            await self._settled.wait()

    def _write_late(self, write: Callable[[], None], machine_id: str) -> None:
        self._late.append(write)
        self.metrics.writes_deferred.inc()
        log.error(
            "inventory written while a cycle decided; applied when it ends",
            extra={"machine_id": machine_id},
        )

    # -- writes ---------------------------------------------------------------------------------

    def forget(self, cluster: str) -> None:
        """Drop the cluster's session-side state; its machines are left to the engine."""
        if self.deciding:
            self._waiting.pop(cluster, None)
            self._waiting[cluster] = None
        else:
            self._drop_demand(cluster)
        _forget_quarantine(self.quarantine, cluster)
        for key in [k for k in self.first_seen if k[0] == cluster]:
            del self.first_seen[key]
        self.metrics.forget_cluster(cluster)

    def _drop_demand(self, cluster: str) -> None:
        self.table.replace(cluster, [])
        self.reported.discard(cluster)

    def record(self, machine: Machine) -> bool:
        """Write a machine; False (and counted) when the record breaks an invariant."""
        try:
            if self.deciding:
                check(machine)  # refused now; written when the cycle ends
                self._write_late(lambda: self._record(machine), machine.id)
            else:
                self._record(machine)  # the inventory checks as it writes
        except InvalidMachine as err:
            self.metrics.machines_rejected.labels(err.reason).inc()
            log.warning(
                "provider record rejected",
                extra={"machine_id": machine.id, "reason": err.reason, "error": str(err)},
            )
            return False
        return True

    def remove(self, machine_id: str) -> None:
        """Take a machine out of the inventory (gone from its provider, or not ours)."""
        if self.deciding:
            self._write_late(lambda: self.inventory.remove(machine_id), machine_id)
        else:
            self.inventory.remove(machine_id)

    def _record(self, machine: Machine) -> None:
        now = self.clock.monotonic()
        previous = self.inventory.get(machine.id)
        self.inventory.upsert(machine, now)
        if previous is None or previous.state != machine.state:
            cluster = machine.cluster or (previous.cluster if previous else "")
            if cluster:
                self.channels.get(cluster).outbox.put(node_state_update(machine, cluster))
                self._observe_latency(machine, cluster, now)
        if machine.id in self.leaving and machine.state is MachineState.IDLE:
            self._hand_over(machine.id)

    def _hand_over(self, machine_id: str) -> None:
        """A machine drained for another shard is let go the moment it is Idle,
        before this shard's own engine could bind or delete it."""
        self.leaving.discard(machine_id)
        self.inventory.remove(machine_id)
        self.ownership.release([machine_id])
        self.ownership.save()
        self.metrics.machines_transferred.labels("out").inc()

    def _observe_latency(self, m: Machine, cluster: str, now: float) -> None:
        """First sighting of a need's demand to a machine Configured for it, once per need."""
        if m.state is MachineState.CONFIGURED and m.assigned_need_fingerprint:
            started = self.first_seen.pop((cluster, m.assigned_need_fingerprint), None)
            if started is not None:
                self.metrics.provisioning_latency.observe(max(0.0, now - started))

    def resync_frames(self, cluster: str) -> list[shard_pb2.ShardMessage]:
        """A NodeStateUpdate per machine bound to `cluster`, from its own index: a Hello
        costs the cluster's machines, not the fleet's."""
        return [
            node_state_update(m, cluster)
            for state in MachineState
            for m in self.inventory.keep_order(cluster, state)
        ]

    def apply_rollup(self, rollup: capacity_pb2.ClusterCapacityNeeds) -> None:
        """Full replacement of a cluster's demand, behind validation and the quarantine,
        decoded in one go (the simulator's path; a Session decodes in slices)."""
        try:
            needs = codec.rollup_from_wire(rollup, self.max_needs_per_rollup)
        except (codec.InvalidRollup, quantity.InvalidQuantity) as err:
            raise self._refused(rollup.cluster_id, err) from err
        self.commit_rollup(rollup.cluster_id, needs)

    async def decode_rollup(self, rollup: capacity_pb2.ClusterCapacityNeeds) -> list[Need]:
        """A roll-up's needs, or BadFrame. Decoding hands the event loop back every
        `DECODE_SLICE` needs: validating a roll-up of tens of thousands of needs takes
        seconds, and no other stream's Hello or roll-up may wait that long for it."""
        try:
            codec.check_rollup(rollup, self.max_needs_per_rollup)
            needs: list[Need] = []
            for start in range(0, len(rollup.needs), DECODE_SLICE):
                if start:
                    await asyncio.sleep(0)
                needs += codec.needs_from_wire(rollup, start, start + DECODE_SLICE)
        except (codec.InvalidRollup, quantity.InvalidQuantity) as err:
            raise self._refused(rollup.cluster_id, err) from err
        return needs

    def _refused(self, cluster: str, err: Exception) -> BadFrame:
        self.metrics.rollups_rejected.labels(cluster).inc()
        return BadFrame(
            grpc.StatusCode.INVALID_ARGUMENT, "invalid_rollup", f"roll-up rejected: {err}"
        )

    def commit_rollup(self, cluster: str, needs: list[Need]) -> None:
        """Replace `cluster`'s demand with decoded needs, unless the quarantine holds them;
        while a cycle decides, when it ends."""
        now = self.clock.monotonic()  # a first sighting dates from the roll-up's arrival
        if self.deciding:
            self._waiting.pop(cluster, None)  # to the end: arrival order is commit order
            self._waiting[cluster] = (needs, now)
            return
        self._commit(cluster, needs, now)

    def _commit(self, cluster: str, needs: list[Need], arrived: float) -> None:
        self.reported.add(cluster)
        if self.quarantine_enabled and not self.quarantine.admit(cluster, len(needs)):
            self.metrics.rollup_quarantined.labels(cluster).set(self.quarantine.held(cluster))
            log.warning(
                "roll-up held by quarantine", extra={"cluster": cluster, "rows": len(needs)}
            )
            return
        self.metrics.rollup_quarantined.labels(cluster).set(0)
        before = self.table.version
        self.table.replace(cluster, needs)
        if self.table.version != before:
            self.on_demand()
            for need in needs:
                self.first_seen.setdefault((cluster, need.fingerprint), arrived)
