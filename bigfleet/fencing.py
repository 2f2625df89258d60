"""Fencing: refusing work from senders that have been superseded.

The failure this prevents is the zombie: a shard process that a restart
replaced but that is still running, or a coordinator that lost leadership
but has not noticed, keeps sending mutations. Every mutation therefore
carries a token that only grows: for shards (epoch, sequence) where the epoch
is persisted and incremented at every start, for the coordinator its term.
Receivers remember the highest token per key and refuse anything not newer.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from bigfleet.errors import CorruptFencingFile, StaleFencingToken, StaleTerm


@dataclass(frozen=True, slots=True, kw_only=True)
class FencingToken:
    """What a shard puts on every mutating provider RPC."""

    shard_id: str
    epoch: int
    sequence: int

    def newer_than(self, other: FencingToken) -> bool:
        """Lexicographic on (epoch, sequence): a higher epoch wins whatever its sequence."""
        return (self.epoch, self.sequence) > (other.epoch, other.sequence)


class FenceBook:
    """Highest accepted token per (shard_id, machine_id), as a provider keeps them.

    Keyed per machine, not per shard: one live shard sends RPCs for different
    machines concurrently and out of order, but never two for one machine.
    """

    def __init__(self) -> None:
        self._marks: dict[tuple[str, str], FencingToken] = {}

    def admit(self, machine_id: str, token: FencingToken) -> None:
        """Record `token` if strictly newer than the mark, else raise StaleFencingToken."""
        key = (token.shard_id, machine_id)
        mark = self._marks.get(key)
        if mark is not None and not token.newer_than(mark):
            raise StaleFencingToken(
                f"machine {machine_id}: token (epoch {token.epoch}, seq {token.sequence}) "
                f"of shard {token.shard_id} is not newer than "
                f"(epoch {mark.epoch}, seq {mark.sequence})"
            )
        self._marks[key] = token

    def mark(self, shard_id: str, machine_id: str) -> FencingToken | None:
        return self._marks.get((shard_id, machine_id))


class TermFence:
    """A shard's high-water mark of coordinator terms: lower is stale, equal or higher passes.

    With a path the mark survives restarts: it is read at start and written (fsynced,
    renamed) before a higher term is admitted, so a restarted shard still refuses an
    instruction from a deposed leader.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.high_water = _read_counter(path, "term", minimum=0) if path else 0

    def admit(self, term: int) -> None:
        if term < self.high_water:
            raise StaleTerm(f"term {term} is below the highest seen, {self.high_water}")
        if term > self.high_water and self.path:
            _write_atomically(self.path, f"{term}\n")
        self.high_water = term


class SequenceCounter:
    """Per-process sequence numbers, drawn fresh for every call attempt, retries included."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        return next(self._counter)


def advance_epoch(path: Path) -> int:
    """Increment the epoch persisted at `path` and return it; 1 when the file is missing.

    The new value is on disk (written to a temporary file, fsynced, renamed)
    before it is returned, so no two starts can ever use the same epoch. A
    file that cannot be parsed is fatal: guessing could reuse an old epoch.
    """
    epoch = _read_counter(path, "epoch", minimum=1) + 1
    _write_atomically(path, f"{epoch}\n")
    return epoch


def _read_counter(path: Path, what: str, minimum: int) -> int:
    """The counter persisted at `path`, 0 when missing; CorruptFencingFile when unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    try:
        value = int(text.strip())
    except ValueError as err:
        raise CorruptFencingFile(f"{path} holds {text[:40]!r}, not an {what}") from err
    if value < minimum:
        raise CorruptFencingFile(f"{path} holds {what} {value}; the lowest is {minimum}")
    return value


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
