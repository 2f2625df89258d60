"""FakeFleet: an in-memory capacity provider's machines and lifecycle, without any I/O.

Lifecycle calls are asynchronous like a real provider's: each moves a machine
into its transitional state and answers at once; the move completes after
the configured per-state latency (0 = at the next observation), observed
lazily on every call. Fencing runs before every other check; idempotent
repeats return the original operation id; out-of-position calls fail with a
code other than FAILED_PRECONDITION. Faults: a seeded failure rate per
transition, one-shot failures, failing or removing a machine outright, and
transition timeouts to FAILED.

Everything that must outlive the process (machines, fence marks, operation
ids, the revision) can be taken out as a FleetImage and put back with
`restore`; `generation` moves on every change to it, so a journal (state.py)
knows when to write. One-shot failures and the seeded fault sequence are
test-run scaffolding and do not survive.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from bigfleet.errors import InvalidRequest, InvalidTransition, MachineNotFound
from bigfleet.fencing import FenceBook, FencingToken
from bigfleet.lifecycle import Call
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState


@dataclass(slots=True, kw_only=True)
class Latency:
    """Seconds a machine dwells in each transitional state; 0 completes at the next call."""

    creating: float = 0.0
    configuring: float = 0.0
    draining: float = 0.0
    deleting: float = 0.0

    def of(self, call: Call) -> float:
        return {
            Call.CREATE: self.creating,
            Call.CONFIGURE: self.configuring,
            Call.DRAIN: self.draining,
            Call.DELETE: self.deleting,
        }[call]


@dataclass(slots=True, kw_only=True)
class Slot:
    """A machine as the fake keeps it."""

    id: str
    state: int
    instance_type: str
    zone: str
    capacity_type: int
    price_per_hour: float
    interruption_probability: float
    resources: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    cluster: str = ""
    shard_metadata: dict[str, str] = field(default_factory=dict)
    bootstrap_blob: bytes = b""  # what Configure carried; a joiner boots the machine with it
    last_error: str = ""
    host_ref: str = ""
    last_op: tuple[Call, str] | None = None  # the latest accepted call and its operation id
    due: float | None = None  # when the transitional state completes
    changed: int = 0  # revision of the latest change


@dataclass(frozen=True, slots=True)
class FleetImage:
    """What survives a restart. A slot's `due` here is seconds still to go, not a clock reading:
    monotonic clocks of two processes share no origin."""

    slots: list[Slot]
    marks: list[tuple[str, FencingToken]]  # (machine id, highest accepted token)
    revision: int
    operations: int  # operation ids minted so far, so new ones never repeat old ones


@dataclass(slots=True)
class _OneShot:
    toward: int
    error: str


class FakeFleet:
    def __init__(
        self,
        *,
        name: str = "fake",
        clock: Callable[[], float],
        latency: Latency | None = None,
        failure_rate: float = 0.0,
        transition_timeout: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.name = name
        self._clock = clock
        self.latency = latency or Latency()
        self.failure_rate = failure_rate  # chance each transition fails
        self.transition_timeout = transition_timeout  # 0 = none
        self._rng = random.Random(seed)
        self._slots: dict[str, Slot] = {}
        self._fences = FenceBook()
        self._fence_keys: set[tuple[str, str]] = set()  # FenceBook cannot list its marks
        self._revision = 0
        self.generation = 0  # moves on every change a FleetImage would show
        self._op_counter = 0
        self._one_shots: dict[str, _OneShot] = {}

    # -- seeding and faults -------------------------------------------------------------------

    def add(self, slot: Slot) -> None:
        if slot.id in self._slots:
            raise ValueError(f"machine {slot.id} already exists")
        if slot.state != S.MACHINE_STATE_SPECULATIVE and not slot.host_ref:
            slot.host_ref = f"host-{slot.id}"
        self._slots[slot.id] = slot
        self._touch(slot)

    def fail_next(self, machine_id: str, toward: int, error: str) -> None:
        """The machine's next transition toward `toward` ends in FAILED with `error`."""
        self._one_shots[machine_id] = _OneShot(toward, error)

    def remove_machine(self, machine_id: str) -> None:
        """The machine vanishes from the provider (lost hardware)."""
        self._slot(machine_id)
        del self._slots[machine_id]
        self._revision += 1
        self.generation += 1

    # -- the six calls ------------------------------------------------------------------------

    def create(self, machine_id: str, token: FencingToken) -> pb.TransitionAck:
        return self._mutate(Call.CREATE, machine_id, token)

    def configure(
        self,
        machine_id: str,
        cluster: str,
        blob: bytes,
        metadata: Mapping[str, str],
        token: FencingToken,
    ) -> pb.TransitionAck:
        if not cluster:
            raise InvalidRequest("configure needs a cluster_id")
        return self._mutate(
            Call.CONFIGURE, machine_id, token, cluster=cluster, metadata=metadata, blob=blob
        )

    def drain(self, machine_id: str, grace_seconds: int, token: FencingToken) -> pb.TransitionAck:
        if grace_seconds < 0:
            raise InvalidRequest(f"grace_period_seconds {grace_seconds} is negative")
        return self._mutate(Call.DRAIN, machine_id, token)

    def delete(self, machine_id: str, token: FencingToken) -> pb.TransitionAck:
        return self._mutate(Call.DELETE, machine_id, token)

    def bootstrap_blob(self, machine_id: str) -> bytes:
        """The join blob the machine was configured with; empty when it is not bound."""
        return self._slot(machine_id).bootstrap_blob

    def get(self, machine_id: str) -> pb.Machine:
        if not machine_id:
            raise InvalidRequest("empty machine id")
        self._settle()
        return self._snapshot(self._slot(machine_id))

    def list(
        self, states: Iterable[int] = (), max_results: int = 0, since_revision: bytes = b""
    ) -> pb.MachineList:
        wanted = set(states)
        if any(s not in S.values() or s == S.MACHINE_STATE_UNSPECIFIED for s in wanted):
            raise InvalidRequest(f"unknown state in filter: {sorted(wanted)}")
        self._settle()
        since = _parse_cursor(since_revision)
        slots = [
            s
            for _, s in sorted(self._slots.items())
            if (not wanted or s.state in wanted) and s.changed > since
        ]
        if max_results > 0:
            slots = slots[:max_results]
        return pb.MachineList(
            machines=[self._snapshot(s) for s in slots], revision=str(self._revision).encode()
        )

    # -- mechanics ----------------------------------------------------------------------------

    def _mutate(
        self,
        call: Call,
        machine_id: str,
        token: FencingToken,
        *,
        cluster: str = "",
        metadata: Mapping[str, str] | None = None,
        blob: bytes = b"",
    ) -> pb.TransitionAck:
        if not machine_id:
            raise InvalidRequest("empty machine id")
        if token.epoch < 0 or token.sequence < 0:
            raise InvalidRequest("fencing epoch and sequence must not be negative")
        # The fence comes first: a zombie learns nothing, not even whether the machine exists.
        # The all-zero token is the test harness's unfenced call.
        if token.epoch or token.sequence or token.shard_id:
            self._fences.admit(machine_id, token)
            self._fence_keys.add((token.shard_id, machine_id))
            self.generation += 1  # the mark must be durable even if the call fails below
        self._settle()
        slot = self._slot(machine_id)
        if (
            slot.last_op is not None
            and slot.last_op[0] is call
            and slot.state in (call.during, call.target)
        ):
            return pb.TransitionAck(operation_id=slot.last_op[1], machine=self._snapshot(slot))
        if slot.state != call.source:
            raise InvalidTransition(
                f"machine {machine_id}: {call.label} needs {S.Name(call.source)}, "
                f"it is {S.Name(slot.state)}"
            )
        self._op_counter += 1
        operation_id = f"op-{call.label}-{slot.id}-{self._op_counter}"
        slot.last_op = (call, operation_id)
        slot.state = call.during
        if call is Call.CONFIGURE:
            slot.cluster = cluster
            slot.shard_metadata = dict(metadata or {})
            slot.bootstrap_blob = blob
        slot.due = self._clock() + self.latency.of(call)
        self._touch(slot)
        ack = pb.TransitionAck(operation_id=operation_id, machine=self._snapshot(slot))
        if self.latency.of(call) == 0:
            self._settle()
        return ack

    def _settle(self) -> None:
        """Complete every transition whose time has come, in id order for determinism."""
        now = self._clock()
        for slot in [self._slots[k] for k in sorted(self._slots)]:
            if slot.due is None or slot.last_op is None:
                continue
            call = slot.last_op[0]
            if self.transition_timeout and self.latency.of(call) > self.transition_timeout:
                if now >= slot.due - self.latency.of(call) + self.transition_timeout:
                    self._fail(slot, f"{call.label} timed out after {self.transition_timeout}s")
                continue
            if now < slot.due:
                continue
            shot = self._one_shots.get(slot.id)
            if shot is not None and shot.toward == call.target:
                del self._one_shots[slot.id]
                self._fail(slot, shot.error)
            elif self.failure_rate and self._rng.random() < self.failure_rate:
                self._fail(slot, f"injected {call.label} failure")
            else:
                self._complete(slot, call)

    def _complete(self, slot: Slot, call: Call) -> None:
        slot.state = call.target
        slot.due = None
        if call is Call.CREATE:
            slot.host_ref = f"host-{slot.id}"
        elif call is Call.DRAIN:
            slot.cluster = ""
            slot.shard_metadata = {}
            slot.bootstrap_blob = b""
        elif call is Call.DELETE:
            slot.host_ref = ""
            slot.cluster = ""
            slot.shard_metadata = {}
            slot.bootstrap_blob = b""
        self._touch(slot)

    def _fail(self, slot: Slot, error: str) -> None:
        slot.state = S.MACHINE_STATE_FAILED
        slot.last_error = error
        slot.due = None
        self._touch(slot)

    def _touch(self, slot: Slot) -> None:
        self._revision += 1
        self.generation += 1
        slot.changed = self._revision

    def _slot(self, machine_id: str) -> Slot:
        slot = self._slots.get(machine_id)
        if slot is None:
            raise MachineNotFound(f"machine {machine_id} not found")
        return slot

    def _snapshot(self, slot: Slot) -> pb.Machine:
        machine = pb.Machine(
            id=slot.id,
            state=slot.state,  # type: ignore[arg-type]
            instance_type=slot.instance_type,
            zone=slot.zone,
            capacity_type=slot.capacity_type,  # type: ignore[arg-type]
            price_per_hour=slot.price_per_hour,
            interruption_probability=slot.interruption_probability,
            resources=pb.Resources(resources=slot.resources),
            # The fake runs no system daemons, so all of the shape is usable.
            allocatable=pb.Resources(resources=slot.resources),
            labels=slot.labels,
            last_error=slot.last_error,
            cluster=slot.cluster,
            shard_metadata=slot.shard_metadata,
        )
        if slot.host_ref:
            machine.host.CopyFrom(pb.HostRef(provider=self.name, ref=slot.host_ref))
        return machine

    def __len__(self) -> int:
        return len(self._slots)

    # -- surviving a restart ---------------------------------------------------------------------

    def export(self) -> FleetImage:
        """A copy of everything that must survive a restart."""
        now = self._clock()
        slots = [
            replace(s, due=None if s.due is None else max(0.0, s.due - now))
            for _, s in sorted(self._slots.items())
        ]
        marks = []
        for shard_id, machine_id in sorted(self._fence_keys):
            mark = self._fences.mark(shard_id, machine_id)
            if mark is not None:
                marks.append((machine_id, mark))
        return FleetImage(slots, marks, self._revision, self._op_counter)

    def restore(self, image: FleetImage) -> None:
        """Replace machines, marks and counters with `image`'s. A transition in flight when
        the image was taken resumes with the time it had left (downtime does not count)."""
        now = self._clock()
        self._slots = {
            s.id: replace(s, due=None if s.due is None else now + s.due) for s in image.slots
        }
        self._fences, self._fence_keys = FenceBook(), set()
        for machine_id, token in image.marks:
            self._fences.admit(machine_id, token)
            self._fence_keys.add((token.shard_id, machine_id))
        self._revision = image.revision
        self._op_counter = image.operations
        self.generation += 1


def _parse_cursor(cursor: bytes) -> int:
    """A malformed cursor reads as empty: the caller gets the full list."""
    try:
        return max(0, int(cursor.decode())) if cursor else 0
    except (UnicodeDecodeError, ValueError):
        return 0
