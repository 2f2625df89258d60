"""The durability category: what a provider held before a restart, it holds after.

Runs only when the suite started the provider itself (`--provider-command`), since it
has to stop and start it; otherwise every check here is reported as skipped. The
checks share one restart: the first to run prepares machines (a fenced Create, a
Configure with cluster and metadata), notes the full List and its revision, restarts
the provider and notes what came back; each check then judges one aspect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import grpc

from bigfleet.conformance.registry import Check, registrar
from bigfleet.conformance.target import CheckSkipped, Target, Token, expect, status_of
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState
SPEC, IDLE, CONFIGURED = (
    S.MACHINE_STATE_SPECULATIVE,
    S.MACHINE_STATE_IDLE,
    S.MACHINE_STATE_CONFIGURED,
)
# Only machines at rest are compared field by field: one in flight may finish meanwhile.
AT_REST = {SPEC, IDLE, CONFIGURED, S.MACHINE_STATE_FAILED}
CLUSTER = "durable-cluster"
META = {"bigfleet.lucy.sh/assigned-priority": "7", "example.com/ünïcode": "välue ✓", "e": ""}
NEEDS = "needs --provider-command: the suite must start the provider to restart it"

CHECKS: list[Check] = []
check = registrar(CHECKS)


@dataclass(frozen=True)
class Restart:
    """What was prepared and seen before the restart, and the first view after it."""

    fenced: str  # created with `fence`; Idle
    fence: Token
    create_op: str
    configured: str  # Configured with CLUSTER and META
    configure_op: str
    before: dict[str, pb.Machine]
    revision: bytes
    after: dict[str, pb.Machine]


async def _prepare(t: Target) -> Restart:
    assert t.restart is not None
    fenced, configured = await t.fresh(SPEC), await t.fresh(IDLE)
    fence = t.fencing_token("durable", 1, 10)
    create_op = (await t.create(fenced, fence)).operation_id
    configure_op = (await t.configure(configured, CLUSTER, META)).operation_id
    await t.settle(fenced, {IDLE})
    await t.settle(configured, {CONFIGURED})
    listing = await t.list()
    before = {m.id: m for m in listing.machines}
    await t.restart()
    after = {m.id: m for m in (await t.list()).machines}
    return Restart(
        fenced, fence, create_op, configured, configure_op, before, listing.revision, after
    )


async def restarted(t: Target) -> Restart:
    """The shared restart, done by whichever durability check runs first."""
    if t.restart is None:
        raise CheckSkipped(NEEDS)
    task = t.shared.get("durability")
    if task is None:
        task = t.shared["durability"] = asyncio.ensure_future(_prepare(t))
    # A failed preparation fails every check of the category with the same reason.
    return await cast("asyncio.Future[Restart]", task)


def _shape(m: pb.Machine) -> dict[str, object]:
    return {
        "state": S.Name(m.state).removeprefix("MACHINE_STATE_"),
        "instance_type": m.instance_type,
        "host": m.host.ref if m.HasField("host") else "",
        "cluster": m.cluster,
        "shard_metadata": dict(m.shard_metadata),
        "last_error": m.last_error,
    }


def _difference(before: pb.Machine, after: pb.Machine) -> str:
    old, new = _shape(before), _shape(after)
    return ", ".join(f"{k} {old[k]!r} -> {new[k]!r}" for k in old if old[k] != new[k])


@check("durability", "machines", "every machine, its state, host and cluster survive a restart")
async def machines_survive(t: Target) -> None:
    r = await restarted(t)
    missing = sorted(set(r.before) - set(r.after))
    expect(not missing, f"{len(missing)} machine(s) gone after the restart, e.g. {missing[:3]}")
    changed = [
        f"{mid}: {_difference(m, r.after[mid])}"
        for mid, m in sorted(r.before.items())
        if m.state in AT_REST and _difference(m, r.after[mid])
    ]
    expect(
        not changed, f"{len(changed)} machine(s) changed by the restart: {'; '.join(changed[:3])}"
    )


@check("durability", "metadata", "cluster and shard_metadata are echoed exactly after a restart")
async def metadata_survives(t: Target) -> None:
    r = await restarted(t)
    m = await t.get(r.configured)
    expect(m.state == CONFIGURED, f"{r.configured} is {S.Name(m.state)}, was Configured")
    expect(m.cluster == CLUSTER, f"cluster {m.cluster!r} after the restart, was {CLUSTER!r}")
    expect(dict(m.shard_metadata) == META, "shard_metadata differs after the restart")


@check("durability", "fences", "fence marks survive a restart: an old token is still FP")
async def fences_survive(t: Target) -> None:
    r = await restarted(t)
    for sequence in (r.fence.sequence, r.fence.sequence - 1):
        token = Token(r.fence.shard_id, r.fence.epoch, sequence)
        code = await status_of(t.create(r.fenced, token))
        expect(
            code == grpc.StatusCode.FAILED_PRECONDITION,
            f"sequence {sequence} (the mark was {r.fence.sequence}) got {code.name} after "
            "the restart: the provider forgot its fence marks",
        )


@check("durability", "operation-ids", "a repeated call after a restart returns the same id")
async def operation_ids_survive(t: Target) -> None:
    r = await restarted(t)
    newer = Token(r.fence.shard_id, r.fence.epoch, r.fence.sequence + 1)
    create = (await t.create(r.fenced, newer)).operation_id
    expect(create == r.create_op, f"Create repeat got {create!r}, before it was {r.create_op!r}")
    configure = (await t.configure(r.configured, CLUSTER, META)).operation_id
    expect(
        configure == r.configure_op,
        f"Configure repeat got {configure!r}, before it was {r.configure_op!r}",
    )


@check("durability", "revision", "a cursor from before a restart still yields later changes")
async def revision_survives(t: Target) -> None:
    r = await restarted(t)
    if not r.revision:
        return  # cursors are optional
    mid = await t.fresh(SPEC)
    await t.create(mid)
    await t.settle(mid, {IDLE})
    delta = await t.list(since=r.revision)
    expect(
        mid in {m.id for m in delta.machines},
        "a delta since the pre-restart cursor misses a machine created after it: "
        "the revision went back",
    )
