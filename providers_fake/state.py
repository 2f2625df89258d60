"""The fake's `--state FILE`: machines, fence marks, operation ids and the revision on disk.

Providers are expected to be durable (docs/provider-author-guide.md): a shard
rebuilds its view from the provider alone, and a fence mark that a restart
forgets lets a zombie back in. The file is one JSON document, rewritten whole
(temporary file, fsync, rename, fsync of the directory) before any answer that
follows a change, so nothing is acknowledged before it is on disk. Writes are
grouped: calls that changed the fleet while a write was running share the next one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bigfleet.fencing import FencingToken
from bigfleet.lifecycle import TRANSITIONAL, Call, MachineState
from bigfleet.providers_fake.fleet import FakeFleet, FleetImage, Slot

CALLS = {call.label: call for call in Call}
KNOWN_STATES = {int(s) for s in MachineState if s != MachineState.UNSPECIFIED}


class StateFileError(Exception):
    """The state file exists but cannot be used; starting empty would lose machines and marks."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Mark(_Strict):
    machine_id: str = Field(min_length=1)
    shard_id: str
    epoch: int = Field(ge=0)
    sequence: int = Field(ge=0)


class _Machine(_Strict):
    id: str = Field(min_length=1)
    state: int
    instance_type: str
    zone: str
    capacity_type: int
    price_per_hour: float = Field(ge=0)
    interruption_probability: float = Field(ge=0, le=1)
    resources: dict[str, str]
    labels: dict[str, str]
    cluster: str
    shard_metadata: dict[str, str]
    bootstrap_blob: str  # base64
    last_error: str
    host_ref: str
    last_op: tuple[str, str] | None  # (call, operation id)
    remaining: float | None = Field(ge=0)  # seconds left of the transition in flight
    changed: int = Field(ge=0)


class _State(_Strict):
    version: Literal[1]
    revision: int = Field(ge=0)
    operations: int = Field(ge=0)
    machines: list[_Machine]
    marks: list[_Mark]


def encode(image: FleetImage) -> bytes:
    """The file's bytes. Plain dicts: the models guard what is read back, and this runs
    before every answer that follows a change, so it skips building them."""
    state = {
        "version": 1,
        "revision": image.revision,
        "operations": image.operations,
        "machines": [_encode_slot(s) for s in image.slots],
        "marks": [
            {"machine_id": m, "shard_id": t.shard_id, "epoch": t.epoch, "sequence": t.sequence}
            for m, t in image.marks
        ],
    }
    return json.dumps(state, separators=(",", ":")).encode()


def _encode_slot(s: Slot) -> dict[str, object]:
    return {
        "id": s.id,
        "state": s.state,
        "instance_type": s.instance_type,
        "zone": s.zone,
        "capacity_type": s.capacity_type,
        "price_per_hour": s.price_per_hour,
        "interruption_probability": s.interruption_probability,
        "resources": s.resources,
        "labels": s.labels,
        "cluster": s.cluster,
        "shard_metadata": s.shard_metadata,
        "bootstrap_blob": base64.b64encode(s.bootstrap_blob).decode(),
        "last_error": s.last_error,
        "host_ref": s.host_ref,
        "last_op": [s.last_op[0].label, s.last_op[1]] if s.last_op else None,
        "remaining": s.due,
        "changed": s.changed,
    }


def decode(data: bytes, path: Path) -> FleetImage:
    """The image in `data`; StateFileError naming `path` and the first problem."""
    try:
        state = _State.model_validate_json(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        where = f"{loc}: " if loc else ""
        raise StateFileError(
            f"{path} is not a fake provider state file: {where}{first['msg']} "
            f"({err.error_count()} problem(s)); fix or remove it to start from the seed"
        ) from None
    ids = [m.id for m in state.machines]
    if len(ids) != len(set(ids)):
        raise StateFileError(f"{path}: a machine id appears twice")
    slots = [_decode_slot(m, path) for m in state.machines]
    marks = [
        (m.machine_id, FencingToken(shard_id=m.shard_id, epoch=m.epoch, sequence=m.sequence))
        for m in state.marks
    ]
    return FleetImage(slots, marks, state.revision, state.operations)


def _decode_slot(m: _Machine, path: Path) -> Slot:
    def bad(why: str) -> StateFileError:
        return StateFileError(f"{path}: machine {m.id}: {why}")

    if m.state not in KNOWN_STATES:
        raise bad(f"unknown state {m.state}")
    if m.last_op is not None and m.last_op[0] not in CALLS:
        raise bad(f"unknown call {m.last_op[0]!r}")
    call = CALLS[m.last_op[0]] if m.last_op else None
    in_flight = m.state in TRANSITIONAL
    # A transition in flight needs its call and time left, or it would never finish.
    if in_flight and (call is None or call.during != m.state or m.remaining is None):
        raise bad(f"in {MachineState(m.state).name} without the call and time it is waiting on")
    try:
        blob = base64.b64decode(m.bootstrap_blob, validate=True)
    except binascii.Error as err:
        raise bad(f"bootstrap_blob is not base64: {err}") from None
    return Slot(
        id=m.id,
        state=m.state,
        instance_type=m.instance_type,
        zone=m.zone,
        capacity_type=m.capacity_type,
        price_per_hour=m.price_per_hour,
        interruption_probability=m.interruption_probability,
        resources=dict(m.resources),
        labels=dict(m.labels),
        cluster=m.cluster,
        shard_metadata=dict(m.shard_metadata),
        bootstrap_blob=blob,
        last_error=m.last_error,
        host_ref=m.host_ref,
        last_op=(call, m.last_op[1]) if call and m.last_op else None,
        due=m.remaining if in_flight else None,
        changed=m.changed,
    )


def read(path: Path) -> FleetImage | None:
    """The image saved at `path`; None when there is no file (start from the seed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateFileError(f"cannot read the fake provider state {path}: {err}") from None
    return decode(data, path)


def write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a power cut
    finally:
        os.close(directory)


class Journal:
    """Keeps `path` in step with `fleet`: `flush` returns once every change so far is on disk."""

    def __init__(self, fleet: FakeFleet, path: Path) -> None:
        self.fleet = fleet
        self.path = path
        self.saved = -1  # the fleet generation on disk; -1: nothing written yet
        self._lock = asyncio.Lock()

    def write_now(self) -> None:
        """Write synchronously (at start, before serving)."""
        generation = self.fleet.generation
        write(self.path, encode(self.fleet.export()))
        self.saved = generation

    async def flush(self) -> None:
        wanted = self.fleet.generation
        async with self._lock:
            if self.saved >= wanted:
                return  # a write that started after our change already covered it
            generation = self.fleet.generation
            data = encode(self.fleet.export())  # taken on the loop: a consistent snapshot
            await asyncio.to_thread(write, self.path, data)
            self.saved = generation


def open_journal(fleet: FakeFleet, path: Path) -> Journal:
    """Restore `fleet` from `path` if it exists (its seed machines are replaced), else save
    the seeded fleet there; either way the journal is ready and the file exists."""
    image = read(path)
    if image is not None:
        fleet.restore(image)
    journal = Journal(fleet, path)
    try:
        journal.write_now()
    except OSError as err:
        raise StateFileError(f"cannot write the fake provider state {path}: {err}") from None
    return journal
