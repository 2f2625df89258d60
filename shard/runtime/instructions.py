"""Carrying out the coordinator's instructions on this shard.

Domains change what the shard owns (the next reconcile is a full one, so
newly owned machines appear and disowned ones leave). Machines move between
shards in two steps, and the donor always goes first: it picks the machines
itself, lets go of them (persisted) and names them in its acknowledgement;
only then does the coordinator tell the recipient to claim those ids.

- `TransferOwnership` to the donor with no ids: release spare Idle machines.
- `ReassignSpeculative` with no ids: release spare quota slots (Speculative).
- `CrossShardDrain`: drain bound machines of lower priority than the
  preemptor; each is released the moment it reaches Idle. A later
  `TransferOwnership` naming them answers once all are released.
- `TransferOwnership` / `ReassignSpeculative` with ids, to the recipient: claim.

The acknowledgement's reason names the machine ids (`bigfleet.handover`), the
only channel the wire gives a shard to answer with data. An instruction
already carried out gets the same answer again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from bigfleet.errors import BigFleetError
from bigfleet.handover import DRAINING, RELEASED, naming
from bigfleet.shard import codec
from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.decision.cost import drain_grace_seconds
from bigfleet.shard.engine.machine import InvalidMachine, MachineState
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.wire import coordinator_pb2 as pb

log = logging.getLogger(__name__)
Outcome = pb.InstructAck.Outcome
Result = tuple[int, str]


class InstructionHandler:
    def __init__(
        self,
        state: ShardState,
        reconciler: Reconciler,
        executor: Executor,
        *,
        batch: int = 8,
        has_shortfall: Callable[[], bool] = lambda: False,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.state = state
        self.ownership = state.ownership
        self.reconciler = reconciler
        self.executor = executor
        self.batch = max(1, batch)
        self.has_shortfall = has_shortfall
        self.wake = wake

    async def handle(self, instruction: pb.CoordinatorInstruction) -> Result:
        previous = self.ownership.done.get(instruction.instruction_id)
        if previous is not None:
            return Outcome.OUTCOME_ACCEPTED, f"duplicate-redelivery; {previous[1]}"
        kind = instruction.WhichOneof("payload")
        handlers: dict[str, Callable[[pb.CoordinatorInstruction], Awaitable[Result]]] = {
            "assign_domain": self._assign_domain,
            "unassign_domain": self._unassign_domain,
            "transfer_ownership": self._transfer,
            "reassign_speculative": self._reassign_speculative,
            "cross_shard_drain": self._cross_shard_drain,
        }
        if kind not in handlers:
            return Outcome.OUTCOME_REJECTED_INVALID, f"{kind or 'empty'} payload is not known"
        await self.state.settled()  # handlers write the inventory; not under a cycle
        try:
            outcome, reason = await handlers[kind](instruction)
        except BigFleetError as err:
            outcome, reason = Outcome.OUTCOME_FAILED, str(err)
        if outcome != Outcome.OUTCOME_FAILED:  # a failure may succeed when redelivered
            self.ownership.finish(instruction.instruction_id, outcome, reason)
        self.ownership.save()  # before the acknowledgement can leave
        log.info(
            "coordinator instruction",
            extra={"instruction_id": instruction.instruction_id, "kind": kind, "reason": reason},
        )
        return outcome, reason

    # -- domains -------------------------------------------------------------------------------

    async def _assign_domain(self, instruction: pb.CoordinatorInstruction) -> Result:
        domain = instruction.assign_domain
        self.ownership.domains.add((domain.topology_key, domain.topology_value))
        self._recount()
        return Outcome.OUTCOME_ACCEPTED, "domain owned"

    async def _unassign_domain(self, instruction: pb.CoordinatorInstruction) -> Result:
        domain = instruction.unassign_domain
        self.ownership.domains.discard((domain.topology_key, domain.topology_value))
        self._recount()
        return Outcome.OUTCOME_ACCEPTED, "domain given up"

    def _recount(self) -> None:
        self.reconciler.full_next = True  # a cursor would not return unchanged machines
        self.wake()

    # -- machines changing hands ---------------------------------------------------------------

    async def _transfer(self, instruction: pb.CoordinatorInstruction) -> Result:
        move = instruction.transfer_ownership
        me = self.state.shard_id
        if move.from_shard_id == me and not move.machine_ids:
            return self._release_spare(MachineState.IDLE)
        if move.from_shard_id == me:
            return self._release_drained(list(move.machine_ids))
        if move.to_shard_id == me:
            return await self._claim(list(move.machine_ids))
        return Outcome.OUTCOME_REJECTED_INVALID, f"shard {me} is neither donor nor recipient"

    async def _reassign_speculative(self, instruction: pb.CoordinatorInstruction) -> Result:
        ids = list(instruction.reassign_speculative.machine_ids)
        if not ids:
            return self._release_spare(MachineState.SPECULATIVE)
        return await self._claim(ids)

    def _release_spare(self, state: MachineState) -> Result:
        if self.has_shortfall():
            return Outcome.OUTCOME_FAILED, "donor has shortfalls of its own"
        inventory = self.state.inventory
        spare = [
            m.id
            for m in sorted(inventory.in_state(state), key=lambda m: m.id)
            if m.id not in self.state.in_flight
        ][: self.batch]
        if not spare:
            return Outcome.OUTCOME_FAILED, f"no {state.title} machine to spare"
        self._let_go(spare)
        return Outcome.OUTCOME_ACCEPTED, naming(RELEASED, spare)

    def _let_go(self, ids: list[str]) -> None:
        for machine_id in ids:
            self.state.remove(machine_id)
            self.reconciler.owner.pop(machine_id, None)
        self.ownership.release(ids)
        self.state.metrics.machines_transferred.labels("out").inc(len(ids))

    def _release_drained(self, ids: list[str]) -> Result:
        for machine_id in ids:  # a drain that failed leaves the machine bound and settled
            m = self.state.inventory.get(machine_id)
            settled = m is None or m.state in (MachineState.CONFIGURED, MachineState.FAILED)
            if settled and machine_id not in self.state.in_flight:
                self.state.leaving.discard(machine_id)
        draining = [i for i in ids if i in self.state.leaving]
        if draining:
            return Outcome.OUTCOME_FAILED, f"still draining: {','.join(draining)}"
        # A machine whose drain failed never became Idle and stays here.
        released = [i for i in ids if i in self.ownership.released]
        return Outcome.OUTCOME_ACCEPTED, naming(RELEASED, released)

    async def _cross_shard_drain(self, instruction: pb.CoordinatorInstruction) -> Result:
        preemptor = instruction.cross_shard_drain.preemptor_priority
        victims = sorted(
            (
                m
                for m in self.state.inventory.in_state(MachineState.CONFIGURED)
                if m.assigned_priority < preemptor and m.id not in self.state.in_flight
            ),
            key=lambda m: (m.assigned_priority, m.price_per_hour, m.id),
        )[: self.batch]
        actions = [
            Action(
                kind=ActionKind.PREEMPT,
                machine_id=m.id,
                cluster=m.cluster,
                reason=f"cross-shard drain for priority {preemptor}",
                grace_seconds=drain_grace_seconds(preemptor, m.assigned_priority),
                preemptor_priority=preemptor,
            )
            for m in victims
        ]
        self.executor.submit(actions)
        started = [a.machine_id for a in actions if a.machine_id in self.state.in_flight]
        if not started:
            return Outcome.OUTCOME_FAILED, f"no machine below priority {preemptor} to drain"
        self.state.leaving.update(started)
        return Outcome.OUTCOME_ACCEPTED, naming(DRAINING, started)

    async def _claim(self, ids: list[str]) -> Result:
        self.ownership.claim(ids)
        self.ownership.save()  # owned from now on, whatever happens next
        found = 0
        for machine_id in ids:
            for name, client in sorted(self.reconciler.providers.items()):
                try:
                    wire = await client.get(machine_id)
                except BigFleetError:
                    continue
                self.reconciler.owner[machine_id] = name
                await self.state.settled()
                with contextlib.suppress(InvalidMachine):  # reconcile counts the bad record
                    found += self.state.record(codec.machine_from_wire(wire))
                break
        self.state.metrics.machines_transferred.labels("in").inc(len(ids))
        self.wake()
        return Outcome.OUTCOME_ACCEPTED, f"claimed {len(ids)}, {found} seen at a provider"
