"""The executor: actions carried out against providers and operators by bounded workers.

Bootstrap binds an Idle machine: the shard marks it Configuring for the
cluster, asks its BlobSource for a join blob (in a running shard: the
cluster's operator), and sends Configure with the blob and the need's
attribution; a source that cannot ask (no session) or a blob that does not
come back in time rolls the machine back to Idle. Provision creates
a Speculative machine, waits for it to be Idle, then bootstraps it. Reclaim
and Preempt tell the operator to cordon and drain, then Drain at the
provider. A fencing refusal means this process is a zombie for that machine:
it is marked Failed, logged as an incident and never retried.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol, TypeVar

from bigfleet import logs
from bigfleet.clock import REAL_CLOCK, Clock
from bigfleet.errors import BigFleetError, StaleFencingToken
from bigfleet.shard import codec
from bigfleet.shard.engine.decision.actions import Action, ActionKind
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import InvalidMachine, Machine, MachineState, transition
from bigfleet.shard.engine.needs import Need
from bigfleet.shard.runtime.blobs import BlobSource, OperatorBlobs
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.provider import CapacityProvider
from bigfleet.supervise import Loops
from bigfleet.wire import capacity_pb2, provider_pb2, shard_pb2

log = logging.getLogger(__name__)
S = MachineState
START_STATE = {
    ActionKind.BOOTSTRAP: S.IDLE,
    ActionKind.PROVISION: S.SPECULATIVE,
    ActionKind.PREEMPT: S.CONFIGURED,
    ActionKind.RECLAIM: S.CONFIGURED,
    ActionKind.DELETE: S.IDLE,
}
POLL_S = 0.05


class _Outcome(Exception):
    """An action ended without success; `outcome` is the metric label."""

    def __init__(self, outcome: str, message: str = "") -> None:
        super().__init__(message or outcome)
        self.outcome = outcome


T = TypeVar("T")


class CycleGate(Protocol):
    """Whether a cycle is reading the inventory now, and a wait for it to end
    (ShardState)."""

    deciding: bool

    async def settled(self) -> None: ...


class _NoCycles:
    """The gate of a caller that never runs cycles beside its executor."""

    deciding = False

    async def settled(self) -> None:
        return None


def _requirements(need: Need) -> list[capacity_pb2.NodeSelectorRequirement]:
    return list(codec.need_to_wire(need).requirements)


class Executor:
    def __init__(
        self,
        *,
        inventory: Inventory,
        record: Callable[[Machine], object],
        in_flight: set[str],
        channels: Channels,
        metrics: ShardMetrics,
        providers: Mapping[str, CapacityProvider],
        owners: Mapping[str, str],
        clock: Clock = REAL_CLOCK,
        concurrency: int = 8,
        bootstrap_timeout_s: float = 30.0,
        execute_timeout_s: float = 30.0,
        loops: Loops | None = None,
        blobs: BlobSource | None = None,
        gate: CycleGate | None = None,
    ) -> None:
        """`record` is the inventory's write path (ShardState.record), and `gate` says when a
        cycle reads the inventory (ShardState): every read-then-write goes through `_write`,
        which waits the cycle out; `in_flight` the machines
        with an action running, shared with whoever must leave them alone; `owners` maps a
        machine id to the name of the provider that lists it; `blobs` answers join blobs
        (default: the clusters' operators through `channels`)."""
        self.inventory = inventory
        self.record = record
        self.gate: CycleGate = gate if gate is not None else _NoCycles()
        self.in_flight = in_flight
        self.channels = channels
        self.blobs = blobs if blobs is not None else OperatorBlobs(channels)
        self.metrics = metrics
        self.providers = providers
        self.owners = owners
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.bootstrap_timeout_s = bootstrap_timeout_s
        self.execute_timeout_s = execute_timeout_s
        self.queue: asyncio.Queue[Action] = asyncio.Queue(maxsize=2 * self.concurrency)
        self.loops = loops or Loops(clock=clock)  # a worker that raises is restarted, not lost

    # -- enqueue (never blocks the cycle) ------------------------------------------------------

    def submit(self, actions: list[Action]) -> None:
        metrics = self.metrics
        for action in actions:
            machine = self.inventory.get(action.machine_id)
            if (
                action.machine_id in self.in_flight
                or machine is None
                or machine.state != START_STATE[action.kind]
            ):
                metrics.actions_deduped.inc()
                continue
            try:
                self.queue.put_nowait(action)
            except asyncio.QueueFull:
                metrics.actions_dropped.inc()  # re-derived next cycle
                continue
            self.in_flight.add(action.machine_id)
            metrics.actions.labels(action.kind.value).inc()
        metrics.action_queue_depth.set(self.queue.qsize())

    async def run(self) -> None:
        """The workers; runs until cancelled. Each is a supervised loop: an unexpected error
        is logged and counted and the worker starts again; the others go on meanwhile. Idle
        workers wait on the queue for as long as it is empty, so none is watched for stuck."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(self.loops.run("shard_executor", self._worker))

    async def _worker(self) -> None:
        metrics = self.metrics
        while True:
            action = await self.queue.get()
            metrics.execute_inflight.inc()
            operation = secrets.token_hex(4)
            with logs.bound(
                machine_id=action.machine_id, cluster=action.cluster, operation_id=operation
            ):
                outcome = "success"
                # One line per action carried out, as users of a controller expect to read
                # what it did (and why) in its log.
                log.info("executing", extra={"kind": action.kind.value, "reason": action.reason})
                try:
                    async with asyncio.timeout(self.execute_timeout_s + self.bootstrap_timeout_s):
                        await self._execute(action)
                except _Outcome as result:
                    outcome = result.outcome
                except StaleFencingToken as err:
                    outcome = "fenced"
                    log.error(
                        "fenced by the provider: this shard is a zombie for the machine",
                        extra={"error": str(err)},
                    )
                    await self._fail(action.machine_id, f"fenced: {err}")
                except TimeoutError:
                    outcome = "ctx_canceled"
                except BigFleetError as err:
                    outcome = "provider_error"
                    log.warning(
                        "action failed", extra={"kind": action.kind.value, "error": str(err)}
                    )
                finally:
                    self.in_flight.discard(action.machine_id)
                    metrics.execute_inflight.dec()
                    metrics.action_queue_depth.set(self.queue.qsize())
                    self.queue.task_done()
                metrics.action_outcomes.labels(action.kind.value, outcome).inc()

    async def drained(self) -> None:
        """Return once every action queued so far has ended (whatever its outcome)."""
        await self.queue.join()

    # -- the actions ----------------------------------------------------------------------------

    async def _write(self, write: Callable[[], T]) -> T:
        """Read then write the inventory, once no cycle reads it. The write happens even
        when the action is cancelled (its timeout) while it waits: what the provider did,
        or a rollback of what the shard marked, is never left out of the inventory."""
        if not self.gate.deciding:
            return write()  # no await: nothing comes between

        async def after_the_cycle() -> T:
            await self.gate.settled()
            return write()

        return await asyncio.shield(after_the_cycle())

    def _provider(self, machine_id: str) -> CapacityProvider:
        name = self.owners.get(machine_id)
        if name is None or name not in self.providers:
            raise _Outcome("provider_error", f"no provider owns machine {machine_id}")
        return self.providers[name]

    def _machine(self, machine_id: str) -> Machine:
        machine = self.inventory.get(machine_id)
        if machine is None:
            raise _Outcome("stale_state", f"machine {machine_id} vanished")
        return machine

    async def _from_provider(
        self, wire: provider_pb2.Machine, keep: Machine | None = None
    ) -> Machine:
        try:
            machine = codec.machine_from_wire(wire)
        except InvalidMachine as err:  # reconcile counts the record; this action just fails
            why = f"the provider answered an invalid record: {err}"
            raise _Outcome("provider_error", why) from err
        if keep is not None and machine.cluster == keep.cluster:
            # The shard's own attribution stands while the binding lasts.
            machine = replace(
                machine,
                assigned_priority=keep.assigned_priority,
                assigned_interruption_penalty=keep.assigned_interruption_penalty,
                assigned_reclamation_penalty=keep.assigned_reclamation_penalty,
                assigned_need_fingerprint=keep.assigned_need_fingerprint,
                assigned_group=keep.assigned_group,
            )
        await self._write(lambda: self.record(machine))
        return machine

    async def _fail(self, machine_id: str, error: str) -> None:
        def failed() -> None:
            machine = self.inventory.get(machine_id)
            if machine is not None and machine.state != S.FAILED:
                self.record(replace(machine, state=S.FAILED, last_error=error))

        await self._write(failed)

    async def _execute(self, action: Action) -> None:
        match action.kind:
            case ActionKind.BOOTSTRAP:
                assert action.need is not None
                await self._bootstrap(action.machine_id, action.cluster, action.need)
            case ActionKind.PROVISION:
                assert action.need is not None
                await self._provision(action.machine_id, action.cluster, action.need)
            case ActionKind.RECLAIM | ActionKind.PREEMPT:
                await self._drain(action)
            case ActionKind.DELETE:
                ack = await self._provider(action.machine_id).delete(action.machine_id)
                await self._from_provider(ack.machine)
                self.metrics.idle_releases.inc()

    async def _provision(self, machine_id: str, cluster: str, need: Need) -> None:
        machine = self._machine(machine_id)
        client = self._provider(machine_id)
        # Stamp the attribution at Creating so this need is credited while in flight.
        stamped = replace(
            machine, assigned_need_fingerprint=need.fingerprint, assigned_group=need.group
        )
        ack = await client.create(machine_id)
        created = await self._from_provider(ack.machine, keep=stamped)
        deadline = self.clock.monotonic() + self.execute_timeout_s
        while created.state != S.IDLE:
            if created.state == S.FAILED:
                raise _Outcome("transition_error", created.last_error)
            if self.clock.monotonic() > deadline:
                raise _Outcome("transition_error", "create did not reach Idle in time")
            await self.clock.sleep(POLL_S)
            created = await self._from_provider(await client.get(machine_id), keep=stamped)
        await self._bootstrap(machine_id, cluster, need)

    async def _bootstrap(self, machine_id: str, cluster: str, need: Need) -> None:
        # Not through `_write`: an action cancelled before it began must not mark anything.
        await self.gate.settled()
        machine = self._machine(machine_id)
        configuring = transition(
            machine,
            S.CONFIGURING,
            cluster=cluster,
            assigned_need_fingerprint=need.fingerprint,
            assigned_group=need.group,
        )
        self.record(configuring)
        if not self.blobs.ready(cluster):
            await self._rollback(configuring)
            raise _Outcome("no_session", f"no operator session for {cluster}")
        try:
            async with asyncio.timeout(self.bootstrap_timeout_s):
                with self.metrics.request_bootstrap.time():
                    response = await self.blobs.request(cluster, _requirements(need))
        except TimeoutError:
            await self._rollback(configuring)
            raise _Outcome("blob_timeout", "the operator sent no bootstrap blob in time") from None
        if response.error:
            await self._rollback(configuring)
            raise _Outcome("blob_error", response.error)
        metadata = codec.attribution_metadata(need)
        try:
            with self.metrics.configure_phase.time():
                ack = await self._provider(machine_id).configure(
                    machine_id, cluster, response.user_data, metadata
                )
        except StaleFencingToken:
            raise
        except BigFleetError as err:
            await self._fail(machine_id, f"configure failed: {err}")
            raise _Outcome("configure_error", str(err)) from err
        bound = transition(
            machine,
            S.CONFIGURING,
            cluster=cluster,
            assigned_priority=need.priority,
            assigned_need_fingerprint=need.fingerprint,
            assigned_group=need.group,
        )
        await self._from_provider(ack.machine, keep=bound)

    async def _rollback(self, configuring: Machine) -> None:
        """Configuring -> Idle before the provider was touched: the binding never happened."""

        def rolled_back() -> None:
            current = self.inventory.get(configuring.id)
            if current is not None and current.state == S.CONFIGURING:
                self.record(
                    transition(
                        current, S.IDLE, cluster="", assigned_need_fingerprint="", assigned_group=""
                    )
                )

        await self._write(rolled_back)

    async def _drain(self, action: Action) -> None:
        machine = self._machine(action.machine_id)
        channel = self.channels.get(machine.cluster)
        instruction = shard_pb2.ReclaimInstruction(
            instruction_id=secrets.token_hex(8),
            nodes=[machine.id],
            grace_period_seconds=action.grace_seconds,
            preemptor_priority=action.preemptor_priority,
        )
        if channel.connected:
            channel.send_reclaim(instruction)
        else:
            log.warning("draining without an operator session", extra={"cluster": machine.cluster})
        with self.metrics.drain_phase.time():
            ack = await self._provider(action.machine_id).drain(
                action.machine_id, action.grace_seconds
            )
        await self._from_provider(ack.machine, keep=machine)
