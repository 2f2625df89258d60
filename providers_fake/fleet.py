"""FakeFleet: an in-memory capacity provider's machines and lifecycle, without any I/O.

Lifecycle calls are asynchronous like a real provider's: each moves a machine
into its transitional state and answers at once; the move completes after
the configured per-state latency (0 = at the next observation), observed
lazily on every call. Fencing runs before every other check; idempotent
repeats return the original operation id; out-of-position calls fail with a
code other than FAILED_PRECONDITION. Faults: a seeded failure rate per
transition, one-shot failures, failing or removing a machine outright, and
transition timeouts to FAILED.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from bigfleet.errors import InvalidRequest, InvalidTransition, MachineNotFound
from bigfleet.fencing import FenceBook, FencingToken
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState


class Op(Enum):
    """Mutating calls, with their source, transitional and target states."""

    CREATE = ("create", S.MACHINE_STATE_SPECULATIVE, S.MACHINE_STATE_CREATING, S.MACHINE_STATE_IDLE)
    CONFIGURE = (
        "configure",
        S.MACHINE_STATE_IDLE,
        S.MACHINE_STATE_CONFIGURING,
        S.MACHINE_STATE_CONFIGURED,
    )
    DRAIN = ("drain", S.MACHINE_STATE_CONFIGURED, S.MACHINE_STATE_DRAINING, S.MACHINE_STATE_IDLE)
    DELETE = (
        "delete",
        S.MACHINE_STATE_IDLE,
        S.MACHINE_STATE_DELETING,
        S.MACHINE_STATE_SPECULATIVE,
    )

    def __init__(self, label: str, source: int, during: int, target: int) -> None:
        self.label = label
        self.source = source
        self.during = during
        self.target = target


@dataclass(slots=True, kw_only=True)
class Latency:
    """Seconds a machine dwells in each transitional state; 0 completes at the next call."""

    creating: float = 0.0
    configuring: float = 0.0
    draining: float = 0.0
    deleting: float = 0.0

    def of(self, op: Op) -> float:
        return {
            Op.CREATE: self.creating,
            Op.CONFIGURE: self.configuring,
            Op.DRAIN: self.draining,
            Op.DELETE: self.deleting,
        }[op]


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
    last_op: tuple[Op, str] | None = None  # the latest accepted call and its operation id
    due: float | None = None  # when the transitional state completes
    changed: int = 0  # revision of the latest change


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
        self._revision = 0
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

    def fail_machine(self, machine_id: str, error: str) -> None:
        slot = self._slot(machine_id)
        self._fail(slot, error)

    def remove_machine(self, machine_id: str) -> None:
        """The machine vanishes from the provider (lost hardware)."""
        self._slot(machine_id)
        del self._slots[machine_id]
        self._revision += 1

    # -- the six calls ------------------------------------------------------------------------

    def create(self, machine_id: str, token: FencingToken) -> pb.TransitionAck:
        return self._mutate(Op.CREATE, machine_id, token)

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
            Op.CONFIGURE, machine_id, token, cluster=cluster, metadata=metadata, blob=blob
        )

    def drain(self, machine_id: str, grace_seconds: int, token: FencingToken) -> pb.TransitionAck:
        if grace_seconds < 0:
            raise InvalidRequest(f"grace_period_seconds {grace_seconds} is negative")
        return self._mutate(Op.DRAIN, machine_id, token)

    def delete(self, machine_id: str, token: FencingToken) -> pb.TransitionAck:
        return self._mutate(Op.DELETE, machine_id, token)

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
        op: Op,
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
        self._settle()
        slot = self._slot(machine_id)
        if (
            slot.last_op is not None
            and slot.last_op[0] is op
            and slot.state in (op.during, op.target)
        ):
            return pb.TransitionAck(operation_id=slot.last_op[1], machine=self._snapshot(slot))
        if slot.state != op.source:
            raise InvalidTransition(
                f"machine {machine_id}: {op.label} needs {S.Name(op.source)}, "
                f"it is {S.Name(slot.state)}"
            )
        self._op_counter += 1
        operation_id = f"op-{op.label}-{slot.id}-{self._op_counter}"
        slot.last_op = (op, operation_id)
        slot.state = op.during
        if op is Op.CONFIGURE:
            slot.cluster = cluster
            slot.shard_metadata = dict(metadata or {})
            slot.bootstrap_blob = blob
        slot.due = self._clock() + self.latency.of(op)
        self._touch(slot)
        ack = pb.TransitionAck(operation_id=operation_id, machine=self._snapshot(slot))
        if self.latency.of(op) == 0:
            self._settle()
        return ack

    def _settle(self) -> None:
        """Complete every transition whose time has come, in id order for determinism."""
        now = self._clock()
        for slot in [self._slots[k] for k in sorted(self._slots)]:
            if slot.due is None or slot.last_op is None:
                continue
            op = slot.last_op[0]
            if self.transition_timeout and self.latency.of(op) > self.transition_timeout:
                if now >= slot.due - self.latency.of(op) + self.transition_timeout:
                    self._fail(slot, f"{op.label} timed out after {self.transition_timeout}s")
                continue
            if now < slot.due:
                continue
            shot = self._one_shots.get(slot.id)
            if shot is not None and shot.toward == op.target:
                del self._one_shots[slot.id]
                self._fail(slot, shot.error)
            elif self.failure_rate and self._rng.random() < self.failure_rate:
                self._fail(slot, f"injected {op.label} failure")
            else:
                self._complete(slot, op)

    def _complete(self, slot: Slot, op: Op) -> None:
        slot.state = op.target
        slot.due = None
        if op is Op.CREATE:
            slot.host_ref = f"host-{slot.id}"
        elif op is Op.DRAIN:
            slot.cluster = ""
            slot.shard_metadata = {}
            slot.bootstrap_blob = b""
        elif op is Op.DELETE:
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


def _parse_cursor(cursor: bytes) -> int:
    """A malformed cursor reads as empty: the caller gets the full list."""
    try:
        return max(0, int(cursor.decode())) if cursor else 0
    except (UnicodeDecodeError, ValueError):
        return 0
