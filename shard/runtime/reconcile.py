"""Provider reconcile: rebuild and refresh the inventory from the providers' List.

Full mode lists everything and forgets machines no provider reports any
more; incremental mode sends the saved cursor and applies deltas (it cannot
see removals, so it is opt-in). Machines with an action in flight are left to
their action. The first successful pass makes the shard ready.
"""

from __future__ import annotations

import logging

from bigfleet.errors import BigFleetError
from shard import codec
from shard.runtime.provider import ProviderClient
from shard.runtime.state import ShardState

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self, state: ShardState, providers: dict[str, ProviderClient], incremental: bool = False
    ) -> None:
        self.state = state
        self.providers = providers
        self.incremental = incremental
        self.owner: dict[str, str] = {}  # machine id -> provider name
        self._cursors: dict[str, bytes] = {}
        self.ready = False

    async def run(self) -> None:
        """One pass over every provider; a failing provider is logged and skipped."""
        seen: set[str] = set()
        complete = True
        for name, client in sorted(self.providers.items()):
            cursor = self._cursors.get(name, b"") if self.incremental else b""
            try:
                listing = await client.list(cursor)
            except BigFleetError as err:
                complete = False
                log.warning(
                    "provider reconcile failed", extra={"provider": name, "error": str(err)}
                )
                continue
            if self.incremental:
                self._cursors[name] = listing.revision
            for wire in listing.machines:
                seen.add(wire.id)
                self.owner[wire.id] = name
                if wire.id in self.state.in_flight:
                    continue
                self.state.record(codec.machine_from_wire(wire))
        if complete and not self.incremental:
            for machine in self.state.inventory.all():
                if machine.id not in seen and machine.id not in self.state.in_flight:
                    self.state.inventory.remove(machine.id)
                    self.owner.pop(machine.id, None)
        if complete:
            self.ready = True
