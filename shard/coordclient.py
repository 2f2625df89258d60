"""The shard's client of the coordinator: heartbeat reports and instruction fencing.

Runs only when a coordinator address is configured, in its own task, and
nothing in the shard waits on it: with every coordinator down the shard
keeps provisioning from what it owns (static stability). It imports only
the wire, never the coordinator package.

Each report carries the outcomes of the instructions received on earlier
replies. Instructions are fenced by term: a reply whose term is below the
highest seen is ignored whole; an instruction below it is REJECTED_STALE.
The rest go to a handler (the shard runtime's), which carries them out; with
no handler every payload is answered REJECTED_INVALID. With a term file the
highest term survives restarts (written before a higher term is acted on), so
a restarted shard still refuses a deposed leader.

With mutual TLS the client presents the shard's certificate; channels are
rebuilt between reports once the certificate has rotated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import grpc

from bigfleet import tls
from bigfleet.errors import StaleTerm
from bigfleet.fencing import TermFence
from bigfleet.shard import codec
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.engine.shortfall import ShortfallLedger
from bigfleet.supervise import beat
from bigfleet.tls import Credentials
from bigfleet.wire import GRPC_OPTIONS, coordinator_pb2, coordinator_pb2_grpc, provider_pb2

log = logging.getLogger(__name__)
Outcome = coordinator_pb2.InstructAck.Outcome
_FREE = (MachineState.IDLE, MachineState.SPECULATIVE)


class ShardView(Protocol):
    """What a report reads from the running shard."""

    @property
    def shard_id(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def cycles(self) -> int: ...
    @property
    def inventory(self) -> Inventory: ...
    @property
    def shortfalls(self) -> ShortfallLedger: ...
    @property
    def address(self) -> str: ...
    @property
    def provider_address(self) -> str: ...


def build_report(
    view: ShardView, acks: list[coordinator_pb2.InstructAck]
) -> coordinator_pb2.ShardReport:
    inventory = view.inventory
    per_type, per_zone = _counts_by_type_and_zone(inventory)
    summary = coordinator_pb2.ShardSummary(
        total_machines=len(inventory),
        free_machines=sum(inventory.count(state) for state in _FREE),  # indexed, no scan
        per_instance_type_counts=per_type,
        per_zone_counts=per_zone,
        provider_address=view.provider_address,
    )
    shortfalls = [
        coordinator_pb2.Shortfall(
            requirements=[codec.requirement_to_wire(r) for r in s.profile.requirements],
            deficit=provider_pb2.Resources(resources=codec.vector_to_wire(s.deficit)),
            priority=s.profile.priority,
            age_cycles=s.age_cycles,
            interruption_penalty_bucket=s.profile.interruption_bucket,  # type: ignore[arg-type]
        )
        for s in view.shortfalls.report()
    ]
    return coordinator_pb2.ShardReport(
        shard_id=view.shard_id,
        cycle=view.cycles,
        timestamp_unix_nanos=time.time_ns(),
        shard_epoch=view.epoch,
        summary=summary,
        shortfalls=shortfalls,
        instruction_acks=acks,
        shard_address=view.address,
    )


def _counts_by_type_and_zone(inventory: Inventory) -> tuple[Counter[str], Counter[str]]:
    """Machines per instance type and per zone, from the inventory's counts per machine
    signature (which holds both): a few hundred signatures rather than every machine,
    which took tens of milliseconds of the event loop per report at 500,000."""
    per_type: Counter[str] = Counter()
    per_zone: Counter[str] = Counter()
    for state in MachineState:
        for count, sample in inventory.shapes(state):
            if sample.instance_type:
                per_type[sample.instance_type] += count
            if sample.zone:
                per_zone[sample.zone] += count
    return per_type, per_zone


Handler = Callable[[coordinator_pb2.CoordinatorInstruction], Awaitable[tuple[int, str]]]


async def _refuse(instruction: coordinator_pb2.CoordinatorInstruction) -> tuple[int, str]:
    kind = instruction.WhichOneof("payload") or "empty"
    return Outcome.OUTCOME_REJECTED_INVALID, f"{kind} is not handled"


class InstructionFence:
    """The highest coordinator term seen, and each instruction's outcome against it.

    With `term_file` the mark is the kernel's persisted TermFence: read at start, written
    (fsynced) before a higher term is acted on. Without one it lives in memory.
    """

    def __init__(self, handler: Handler = _refuse, term_file: Path | None = None) -> None:
        self.terms = TermFence(term_file)  # CorruptFencingFile here refuses the start
        self.handler = handler

    @property
    def high_water(self) -> int:
        return self.terms.high_water

    async def judge(self, reply: coordinator_pb2.ReportAck) -> list[coordinator_pb2.InstructAck]:
        try:
            self.terms.admit(reply.coordinator_term)
        except StaleTerm:
            log.warning(
                "reply from a deposed coordinator ignored",
                extra={"term": reply.coordinator_term, "high_water": self.high_water},
            )
            return []
        return [await self._one(i) for i in reply.instructions]

    async def _one(
        self, instruction: coordinator_pb2.CoordinatorInstruction
    ) -> coordinator_pb2.InstructAck:
        ack = coordinator_pb2.InstructAck(instruction_id=instruction.instruction_id)
        if instruction.coordinator_term < self.high_water:
            ack.outcome = Outcome.OUTCOME_REJECTED_STALE
            ack.reason = f"term {instruction.coordinator_term} is below {self.high_water}"
        else:
            ack.outcome, ack.reason = await self.handler(instruction)  # type: ignore[assignment]
        return ack


class CoordinatorClient:
    def __init__(
        self,
        address: str,
        view: ShardView,
        interval_s: float = 10.0,
        handler: Handler = _refuse,
        *,
        credentials: Credentials | None = None,
        term_file: Path | None = None,
    ) -> None:
        # Several replicas, comma-separated: only the leader takes reports, so a refusal
        # (a follower) or silence (down) moves the client on to the next one.
        self.addresses = [a.strip() for a in address.split(",") if a.strip()]
        self.current = 0
        self.view = view
        self.interval_s = interval_s
        self.credentials = credentials  # the shard's own; None: plaintext
        self.fence = InstructionFence(handler, term_file)
        self.pending_acks: list[coordinator_pb2.InstructAck] = []
        self.reports_acknowledged = 0
        self.failures = 0  # reports in a row that no replica took

    def _dial(self) -> tuple[list[grpc.aio.Channel], list[coordinator_pb2_grpc.CoordinatorStub]]:
        """A channel per replica, with the certificate pair current now."""
        self._rotation = self.credentials.rotations if self.credentials else 0
        channels = [tls.channel(a, self.credentials, options=GRPC_OPTIONS) for a in self.addresses]
        return channels, [coordinator_pb2_grpc.CoordinatorStub(c) for c in channels]

    def _rotated(self) -> bool:
        """Whether the pair changed since the channels were built (whoever noticed it first)."""
        if self.credentials is None:
            return False
        self.credentials.refresh()
        return self.credentials.rotations != self._rotation

    def stuck_after_s(self) -> float:
        """Liveness: a pass over every replica (a report each, bounded by the interval) and
        the pause after it take far less than this."""
        return max(120.0, 3 * (len(self.addresses) + 1) * self.interval_s)

    async def run(self) -> None:
        """Report until cancelled; supervised as `shard_coordinator_client` (`beat` per report)."""
        channels, stubs = self._dial()
        try:
            while True:
                beat()
                if self._rotated():  # reports are sequential: nothing is in flight here
                    old, (channels, stubs) = channels, self._dial()
                    for channel in old:
                        await channel.close()
                settled = await self.report_once(stubs[self.current])
                if settled is None:  # refused or unanswered: try the next replica
                    self.current = (self.current + 1) % len(stubs)
                    if self.failures % len(stubs):
                        continue  # every replica once before waiting
                # Settled outcomes go back at once rather than an interval later; a
                # FAILED one is redelivered on every reply, so it waits for the interval.
                if not settled:
                    await asyncio.sleep(self.interval_s)
        finally:
            for channel in channels:
                await channel.close()

    async def report_once(self, stub: coordinator_pb2_grpc.CoordinatorStub) -> bool | None:
        """One report; True when it brought outcomes worth sending straight back,
        None when it was not taken (a follower, or no answer)."""
        acks, self.pending_acks = self.pending_acks, []
        try:
            reply = await stub.ReportShard(build_report(self.view, acks), timeout=self.interval_s)
        except grpc.aio.AioRpcError as err:
            self.pending_acks = acks + self.pending_acks  # resent with the next report
            self.failures += 1
            # A dead coordinator would otherwise log every interval: the first failure of
            # a run and every tenth after it are warnings, the rest debug.
            level = logging.WARNING if self.failures % 10 == 1 else logging.DEBUG
            log.log(
                level,
                "coordinator report failed",
                extra={
                    "coordinator": self.addresses[self.current],
                    "code": err.code().name,
                    "error": err.details(),
                    "failures_in_a_row": self.failures,
                },
            )
            return None
        if self.failures:
            log.info("coordinator reached again", extra={"after_failures": self.failures})
        self.failures = 0
        self.reports_acknowledged += reply.acknowledged
        outcomes = await self.fence.judge(reply)
        self.pending_acks.extend(outcomes)
        return any(a.outcome != Outcome.OUTCOME_FAILED for a in outcomes)
