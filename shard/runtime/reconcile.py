"""Provider reconcile: rebuild and refresh the inventory from the providers' List.

A full pass lists everything and forgets machines no provider reports any
more. Between full passes (every `full_every` passes) the saved cursor is
sent as `since_revision` so only changed machines come back; a provider
without cursors simply returns everything. Incremental-only mode never runs a
full pass (it cannot see removals, so it is opt-in). Machines with an action
in flight are left to their action. Machines this shard does not own (another
shard's domain, or handed over) are skipped and dropped from the inventory.
The first successful pass makes the shard ready.

A malformed record (no id, an unknown state or capacity type, a bad quantity, a
broken invariant) is refused on its own: counted in
`bigfleet_shard_machines_rejected_total{reason}` on every pass that lists it,
logged once per (machine, reason), and the machine's last good record stays in
the inventory (a full pass does not forget it: the provider still lists it).
The pass goes on for every other machine.

A shard's reconcile hands the event loop back every `yield_every` records
(and waits out a cycle that began meanwhile): a full listing of 100,000
machines takes over a second to apply, and no Hello may wait that long. The
simulator applies its listings whole, so its runs stay reproducible.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from bigfleet.errors import BigFleetError
from bigfleet.shard import codec
from bigfleet.shard.engine.machine import InvalidMachine, Machine, MachineState, check
from bigfleet.shard.runtime.provider import CapacityProvider
from bigfleet.shard.runtime.state import ShardState
from bigfleet.wire import provider_pb2

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        state: ShardState,
        providers: Mapping[str, CapacityProvider],
        incremental: bool = False,
        full_every: int = 10,
        yield_every: int = 0,
    ) -> None:
        """`yield_every` > 0: hand the event loop back after that many records."""
        self.state = state
        self.yield_every = yield_every
        self.providers = providers
        self.incremental = incremental
        self.full_every = max(1, full_every)
        self.passes = 0
        self.owner: dict[str, str] = {}  # machine id -> provider name
        self._cursors: dict[str, bytes] = {}
        self.ready = False
        self.full_next = False  # ownership changed: unchanged machines must be seen again
        self._refused: dict[str, str] = {}  # machine id -> reason last logged for it

    async def run(self) -> None:
        """One pass over every provider; a failing provider is logged and skipped."""
        full = self.full_next or (not self.incremental and self.passes % self.full_every == 0)
        self.full_next = False
        self.passes += 1
        ownership = self.state.ownership
        seen: set[str] = set()
        listed: set[str] = set()
        complete = True
        for name, client in sorted(self.providers.items()):
            cursor = b"" if full else self._cursors.get(name, b"")
            try:
                listing = await client.list(cursor)
            except BigFleetError as err:
                complete = False
                log.warning(
                    "provider reconcile failed", extra={"provider": name, "error": str(err)}
                )
                continue
            self._cursors[name] = listing.revision
            await self.state.settled()  # no await between here and a write but the yield's
            for number, wire in enumerate(listing.machines, 1):
                if self.yield_every and number % self.yield_every == 0:
                    await asyncio.sleep(0)
                    await self.state.settled()
                listed.add(wire.id)
                if wire.id in self.state.in_flight:
                    seen.add(wire.id)
                    continue
                try:
                    machine = codec.machine_from_wire(wire)
                except InvalidMachine as err:
                    if ownership.owns(_probe(wire)):
                        self._refuse(name, wire.id, err)
                        if wire.id in self.state.inventory:
                            seen.add(wire.id)  # still listed: the last good record stays
                    elif wire.id in self.state.inventory:
                        self.state.remove(wire.id)
                        self.owner.pop(wire.id, None)
                    continue
                if not ownership.owns(machine):
                    if wire.id in self.state.inventory:
                        self.state.remove(wire.id)
                        self.owner.pop(wire.id, None)
                    continue
                seen.add(wire.id)
                try:
                    check(machine)
                except InvalidMachine as err:
                    self._refuse(name, wire.id, err)
                    continue
                self._refused.pop(wire.id, None)
                self.owner[wire.id] = name
                self.state.record(machine)
        if complete and full:
            await self.state.settled()
            for machine_id in set(self._refused) - listed:
                del self._refused[machine_id]  # gone from every provider: log afresh if back
            for machine in self.state.inventory.machines():
                if machine.id not in seen and machine.id not in self.state.in_flight:
                    self.state.remove(machine.id)
                    self.owner.pop(machine.id, None)
        if complete:
            self.ready = True

    def _refuse(self, provider: str, machine_id: str, err: InvalidMachine) -> None:
        """Count a refused record every time; log it once per (machine, reason)."""
        self.state.metrics.machines_rejected.labels(err.reason).inc()
        if self._refused.get(machine_id) == err.reason:
            return
        self._refused[machine_id] = err.reason
        log.warning(
            "provider record rejected; the machine's last good record stays",
            extra={
                "provider": provider,
                "machine_id": machine_id,
                "reason": err.reason,
                "error": str(err),
            },
        )


def _probe(wire: provider_pb2.Machine) -> Machine:
    """What ownership reads (id, zone, instance type, labels) of a record that did not decode."""
    return Machine(
        id=wire.id,
        state=MachineState.UNSPECIFIED,
        instance_type=wire.instance_type,
        zone=wire.zone,
        labels=dict(wire.labels),
    )
