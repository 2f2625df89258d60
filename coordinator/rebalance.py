"""Cross-shard rebalancing: capacity moves to shards whose demand ages unmet.

A shard is a recipient when its report carries a shortfall older than
`min_age_cycles` that is not `Same`-constrained (a gang must land in one
domain, which another shard's machines cannot promise). Three tiers, tried
in order per recipient and donor:

1. idle: the donor (free machines, no shortfall of its own) releases spare
   Idle machines;
2. speculative: the donor releases spare quota slots;
3. drain (shortfall older than `drain_age_cycles`): the donor drains bound
   machines of lower priority than the recipient's demand; each one leaves
   the donor the moment it is Idle.

The donor always chooses the machines and lets go of them first; only the
ids its acknowledgement names go to the recipient to claim, so no machine
is ever owned by two shards. Each move is a record in the replicated store,
written before its instruction goes out; a new leader resumes it with the
same instruction ids, so a donor answers a repeat with the same machines.
After a move a recipient cools down; a refusal parks that (donor, tier).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.coordinator.store import StateReader, Store
from bigfleet.handover import DRAINING, RELEASED, ids_in
from bigfleet.wire import capacity_pb2
from bigfleet.wire import coordinator_pb2 as pb

log = logging.getLogger(__name__)
TRANSFERS = "transfers/"
Outcome = pb.InstructAck.Outcome
SAME = capacity_pb2.NodeSelectorRequirement.OPERATOR_SAME
TIERS = ("idle", "speculative", "drain")


@dataclass(frozen=True)
class RebalanceSettings:
    interval_s: float = 5.0
    min_age_cycles: int = 5
    drain_age_cycles: int = 12
    cooldown_s: float = 40.0  # about 8 shard cycles
    silent_after_s: float = 60.0  # a shard not heard from for this long is no donor


@dataclass
class ShardView:
    """What the last report of one shard says, leader-local."""

    free: int = 0
    total: int = 0
    short: bool = False
    provider: str = ""
    priority: int = 0  # of the oldest eligible shortfall's class; 0 with none
    age_cycles: int = 0
    eligible_since: float = 0.0  # monotonic time of the first report that made it eligible
    seen_at: float = 0.0  # monotonic time of its latest report


@dataclass
class Transfer:
    recipient: str
    donor: str
    tier: str
    phase: str = "release"  # release -> [handover, drain only] -> claim
    machine_ids: list[str] = field(default_factory=list)
    priority: int = 0
    provider: str = ""
    opened_ns: int = 0

    @property
    def instruction_id(self) -> str:
        # Stable across leaders: a donor recognises a repeat and names the same machines.
        return f"rebalance-{self.recipient}-{self.opened_ns}-{self.phase}"

    def instruction(self) -> tuple[str, pb.CoordinatorInstruction]:
        """The shard the current phase addresses, and what it is told."""
        ids = self.machine_ids
        move = pb.TransferOwnership(
            machine_ids=ids, from_shard_id=self.donor, to_shard_id=self.recipient
        )
        if self.phase == "claim":
            if self.tier == "speculative":
                return self.recipient, pb.CoordinatorInstruction(
                    reassign_speculative=pb.ReassignSpeculative(machine_ids=ids)
                )
            return self.recipient, pb.CoordinatorInstruction(transfer_ownership=move)
        if self.phase == "handover":
            return self.donor, pb.CoordinatorInstruction(transfer_ownership=move)
        if self.tier == "speculative":
            return self.donor, pb.CoordinatorInstruction(
                reassign_speculative=pb.ReassignSpeculative()
            )
        if self.tier == "drain":
            drain = pb.CrossShardDrain(preemptor_priority=self.priority)
            return self.donor, pb.CoordinatorInstruction(cross_shard_drain=drain)
        return self.donor, pb.CoordinatorInstruction(transfer_ownership=move)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def eligible(shortfalls: Iterable[pb.Shortfall], min_age: int) -> pb.Shortfall | None:
    """The highest-priority, oldest shortfall another shard's machines could serve."""
    for s in shortfalls:  # shards send them priority desc, then age desc
        if s.age_cycles > min_age and not any(r.operator == SAME for r in s.requirements):
            return s
    return None


async def transfers(state: StateReader) -> dict[str, Transfer]:
    found = await state.scan(TRANSFERS)
    return {t.recipient: t for t in (Transfer(**json.loads(v)) for v in found.values())}


Send = Callable[[str, pb.CoordinatorInstruction, str], None]
Cancel = Callable[[str, str], None]


class Rebalancer:
    def __init__(
        self, settings: RebalanceSettings, send: Send, cancel: Cancel, clock: Clock = REAL_CLOCK
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.send = send  # (shard, instruction, instruction id) onto the instruction queue
        self.cancel = cancel  # (shard, instruction id) off it
        self.views: dict[str, ShardView] = {}
        self.cooling: dict[str, float] = {}  # recipient -> monotonic time it may take again
        self.parked: dict[tuple[str, str, str], float] = {}  # (recipient, donor, tier) -> until
        self.completed: list[float] = []  # seconds from eligible report to claim acknowledged
        self.wake = asyncio.Event()
        self.on_done: Callable[[Transfer, float], None] = lambda t, s: None

    # -- inputs ----------------------------------------------------------------------------------

    def observe(self, report: pb.ShardReport) -> None:
        """Fold one report into the leader-local view; new eligible demand wakes a sweep."""
        view = self.views.setdefault(report.shard_id, ShardView())
        view.seen_at = self.clock.monotonic()
        view.free = report.summary.free_machines
        view.total = report.summary.total_machines
        view.short = bool(report.shortfalls)
        view.provider = report.summary.provider_address
        top = eligible(report.shortfalls, self.settings.min_age_cycles)
        if top is None:
            view.priority, view.age_cycles, view.eligible_since = 0, 0, 0.0
            return
        if not view.eligible_since:
            view.eligible_since = self.clock.monotonic()
            self.wake.set()
        view.priority, view.age_cycles = top.priority, top.age_cycles

    def forget(self, shard_id: str) -> None:
        self.views.pop(shard_id, None)

    # -- the sweep --------------------------------------------------------------------------------

    async def resume(self, store: Store) -> None:
        """A new leader re-sends every open move's current instruction, same ids."""
        for t in (await transfers(store)).values():
            self._send(t)

    async def sweep(self, store: Store) -> int:
        """Open a move for each recipient that has none; returns how many were opened."""
        open_moves = await transfers(store)
        busy = {t.recipient for t in open_moves.values()} | {t.donor for t in open_moves.values()}
        now = self.clock.monotonic()
        recipients = sorted(
            (s for s, v in self.views.items() if v.priority or v.age_cycles),
            key=lambda s: (-self.views[s].priority, -self.views[s].age_cycles, s),
        )
        opened = 0
        for recipient in recipients:
            if recipient in busy or self.cooling.get(recipient, 0.0) > now:
                continue
            move = self._plan(recipient, busy, now)
            if move is None:
                continue
            await store.put(TRANSFERS + recipient, move.encode())  # written before it is sent
            self._send(move)
            busy |= {move.recipient, move.donor}
            opened += 1
            log.info("rebalance opened", extra=asdict(move))
        return opened

    def _plan(self, recipient: str, busy: set[str], now: float) -> Transfer | None:
        want = self.views[recipient]
        heard = now - self.settings.silent_after_s
        others = [
            (s, v)
            for s, v in self.views.items()
            if s != recipient and s not in busy and v.seen_at >= heard
        ]
        for tier in TIERS:
            if tier == "drain":
                if want.age_cycles <= self.settings.drain_age_cycles:
                    continue
                donors = sorted(
                    (s for s, v in others if v.total > v.free), key=lambda s: self._bound(s)
                )
            else:
                donors = sorted(
                    (s for s, v in others if v.free > 0 and not v.short),
                    key=lambda s: (-self.views[s].free, s),
                )
            for donor in donors:
                if self.parked.get((recipient, donor, tier), 0.0) > now:
                    continue
                return Transfer(
                    recipient,
                    donor,
                    tier,
                    priority=want.priority,
                    provider=self.views[donor].provider,
                    opened_ns=time.time_ns(),
                )
        return None

    def _bound(self, shard: str) -> tuple[int, str]:
        view = self.views[shard]
        return -(view.total - view.free), shard

    # -- acknowledgements ------------------------------------------------------------------------

    async def acknowledged(
        self, store: Store, shard_id: str, acks: Iterable[pb.InstructAck]
    ) -> list[Transfer]:
        """Advance the moves these acknowledgements answer; returns the completed ones."""
        finished = []
        moves = None
        for ack in acks:
            if not ack.instruction_id.startswith("rebalance-"):
                continue
            moves = moves if moves is not None else await transfers(store)
            move = next((m for m in moves.values() if m.instruction_id == ack.instruction_id), None)
            if move is None or move.instruction()[0] != shard_id:
                continue  # a repeat of a step already taken
            if await self._advance(store, move, ack):
                finished.append(move)
        return finished

    async def _advance(self, store: Store, move: Transfer, ack: pb.InstructAck) -> bool:
        """One step of `move` on `ack`; True when the recipient has claimed the machines."""
        if ack.outcome == Outcome.OUTCOME_REJECTED_STALE:
            return False  # a deposed leader's copy; this leader's copy of the same id stands
        if ack.outcome == Outcome.OUTCOME_FAILED and move.phase == "handover":
            return False  # still draining: the instruction stays queued and is asked again
        if ack.outcome != Outcome.OUTCOME_ACCEPTED:
            self.cancel(move.instruction()[0], move.instruction_id)
            if move.phase == "release":  # the donor had nothing to give in this tier
                self.parked[(move.recipient, move.donor, move.tier)] = (
                    self.clock.monotonic() + self.settings.cooldown_s
                )
            await store.commit({}, deletes=[TRANSFERS + move.recipient])
            log.warning("rebalance abandoned", extra={"reason": ack.reason, **asdict(move)})
            return False
        if move.phase == "claim":
            await store.commit({}, deletes=[TRANSFERS + move.recipient])
            self.cooling[move.recipient] = self.clock.monotonic() + self.settings.cooldown_s
            view = self.views.get(move.recipient)
            if view is not None and view.eligible_since:
                self.completed.append(self.clock.monotonic() - view.eligible_since)
                view.eligible_since = 0.0
            self.on_done(move, self.completed[-1] if self.completed else 0.0)
            log.info("rebalance done", extra=asdict(move))
            return True
        if move.tier == "drain" and move.phase == "release":
            move.machine_ids, move.phase = ids_in(ack.reason, DRAINING), "handover"
        else:
            move.machine_ids, move.phase = ids_in(ack.reason, RELEASED), "claim"
        if not move.machine_ids:
            await store.commit({}, deletes=[TRANSFERS + move.recipient])
            return False
        await store.put(TRANSFERS + move.recipient, move.encode())
        self._send(move)
        return False

    def _send(self, move: Transfer) -> None:
        shard, instruction = move.instruction()
        self.send(shard, instruction, move.instruction_id)
