"""Provider reconcile: rebuild and refresh the inventory from the providers' List.

A full pass lists everything and forgets machines no provider reports any
more. Between full passes (every `full_every` passes) the saved cursor is
sent as `since_revision` so only changed machines come back; a provider
without cursors simply returns everything. Incremental-only mode never runs a
full pass (it cannot see removals, so it is opt-in). Machines with an action
in flight are left to their action. Machines this shard does not own (another
shard's domain, or handed over) are skipped and dropped from the inventory.
The first successful pass makes the shard ready.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bigfleet.errors import BigFleetError
from bigfleet.shard import codec
from bigfleet.shard.runtime.provider import CapacityProvider
from bigfleet.shard.runtime.state import ShardState

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        state: ShardState,
        providers: Mapping[str, CapacityProvider],
        incremental: bool = False,
        full_every: int = 10,
    ) -> None:
        self.state = state
        self.providers = providers
        self.incremental = incremental
        self.full_every = max(1, full_every)
        self.passes = 0
        self.owner: dict[str, str] = {}  # machine id -> provider name
        self._cursors: dict[str, bytes] = {}
        self.ready = False
        self.full_next = False  # ownership changed: unchanged machines must be seen again

    async def run(self) -> None:
        """One pass over every provider; a failing provider is logged and skipped."""
        full = self.full_next or (not self.incremental and self.passes % self.full_every == 0)
        self.full_next = False
        self.passes += 1
        ownership = self.state.ownership
        seen: set[str] = set()
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
            for wire in listing.machines:
                if wire.id in self.state.in_flight:
                    seen.add(wire.id)
                    continue
                machine = codec.machine_from_wire(wire)
                if not ownership.owns(machine):
                    if wire.id in self.state.inventory:
                        self.state.inventory.remove(wire.id)
                        self.owner.pop(wire.id, None)
                    continue
                seen.add(wire.id)
                self.owner[wire.id] = name
                self.state.record(machine)
        if complete and full:
            for machine in self.state.inventory.all():
                if machine.id not in seen and machine.id not in self.state.in_flight:
                    self.state.inventory.remove(machine.id)
                    self.owner.pop(machine.id, None)
        if complete:
            self.ready = True
