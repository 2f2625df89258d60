"""The machine lifecycle every part agrees on: states, the four provider calls, legal moves.

A provider moves a machine between three stable states through four calls, each
passing through one transitional state that can also end in Failed:

    Speculative --Create--> Creating --> Idle --Configure--> Configuring --> Configured
    Configured --Drain--> Draining --> Idle --Delete--> Deleting --> Speculative

The engine adds one shard-local move: an abandoned bootstrap rolls Configuring
back to Idle. Numbers equal the wire enum `MachineState`.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class MachineState(IntEnum):
    """Numbers equal the wire enum MachineState."""

    UNSPECIFIED = 0
    SPECULATIVE = 1
    CREATING = 2
    IDLE = 3
    CONFIGURING = 4
    CONFIGURED = 5
    DRAINING = 6
    DELETING = 7
    FAILED = 8

    @property
    def title(self) -> str:
        """ "Idle", "Configured"...: the spelling traces and dashboards use."""
        return self.name.capitalize()


S = MachineState


class Call(Enum):
    """A provider's mutating call: the state it starts from, passes through, and ends in."""

    CREATE = ("create", S.SPECULATIVE, S.CREATING, S.IDLE)
    CONFIGURE = ("configure", S.IDLE, S.CONFIGURING, S.CONFIGURED)
    DRAIN = ("drain", S.CONFIGURED, S.DRAINING, S.IDLE)
    DELETE = ("delete", S.IDLE, S.DELETING, S.SPECULATIVE)

    def __init__(self, label: str, source: S, during: S, target: S) -> None:
        self.label = label
        self.source = source
        self.during = during
        self.target = target


STABLE = frozenset({S.SPECULATIVE, S.IDLE, S.CONFIGURED})
TRANSITIONAL = frozenset(call.during for call in Call)


def _legal() -> dict[MachineState, frozenset[MachineState]]:
    moves: dict[MachineState, set[MachineState]] = {state: set() for state in MachineState}
    for call in Call:
        moves[call.source].add(call.during)
        moves[call.during] |= {call.target, S.FAILED}
    # The shard's rollback of an abandoned bootstrap (no provider call involved).
    moves[S.CONFIGURING].add(S.IDLE)
    return {state: frozenset(to) for state, to in moves.items()}


LEGAL_TRANSITIONS: dict[MachineState, frozenset[MachineState]] = _legal()
