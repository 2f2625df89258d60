"""Instructions the leader owes each shard, redelivered on every reply until acknowledged.

Leader-local: a new leadership starts empty with its own sequence. Every
instruction carries (term, sequence) and an id stable across redelivery, so
a shard can refuse a deposed leader's and recognise a repeat.
"""

from __future__ import annotations

from collections.abc import Iterable

from bigfleet.wire import coordinator_pb2 as pb

# Outcomes that keep an instruction pending: FAILED may succeed when redelivered,
# and REJECTED_STALE answers a deposed leader's copy, not this leader's.
_KEEP = {pb.InstructAck.Outcome.OUTCOME_FAILED, pb.InstructAck.Outcome.OUTCOME_REJECTED_STALE}


class InstructionQueue:
    def __init__(self, term: int) -> None:
        self.term = term
        self.sequence = 0
        self.pending: dict[str, dict[str, pb.CoordinatorInstruction]] = {}

    def send(
        self, shard_id: str, instruction: pb.CoordinatorInstruction, instruction_id: str = ""
    ) -> str:
        """Queue `instruction` (its payload set) for `shard_id`; returns its id.

        A caller-chosen id stays the same across leaders, so a shard that already
        carried the instruction out answers the repeat instead of doing it twice.
        """
        self.sequence += 1
        instruction.coordinator_term = self.term
        instruction.sequence_number = self.sequence
        instruction.instruction_id = instruction_id or f"{self.term}-{self.sequence}"
        self.pending.setdefault(shard_id, {})[instruction.instruction_id] = instruction
        return instruction.instruction_id

    def acknowledge(self, shard_id: str, acks: Iterable[pb.InstructAck]) -> None:
        queued = self.pending.get(shard_id, {})
        for ack in acks:
            if ack.outcome not in _KEEP:
                queued.pop(ack.instruction_id, None)

    def cancel(self, shard_id: str, instruction_id: str) -> None:
        self.pending.get(shard_id, {}).pop(instruction_id, None)

    def for_shard(self, shard_id: str) -> list[pb.CoordinatorInstruction]:
        return sorted(self.pending.get(shard_id, {}).values(), key=lambda i: i.sequence_number)

    def forget(self, shard_id: str) -> None:
        self.pending.pop(shard_id, None)
