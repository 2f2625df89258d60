"""Every conformance check, by category (validation.md §3), registered in order.

A check gets a Target, raises CheckFailed (or lets an unexpected RPC error
escape) when the provider breaks the contract, and returns when it holds.
FAILED_PRECONDITION is reserved for fencing: every other refusal must use
another code. The durability category (durability.py) is registered last: it
restarts the provider.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Awaitable, Callable

import grpc

from bigfleet.conformance import durability
from bigfleet.conformance.registry import Check, registrar, run_check
from bigfleet.conformance.target import Target, Token, expect, status_of
from bigfleet.lifecycle import Call
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState
Code = grpc.StatusCode
FP = Code.FAILED_PRECONDITION
SPEC, IDLE, CONFIGURED = (
    S.MACHINE_STATE_SPECULATIVE,
    S.MACHINE_STATE_IDLE,
    S.MACHINE_STATE_CONFIGURED,
)
FAILED = S.MACHINE_STATE_FAILED


__all__ = ["CHECKS", "Check", "run_check"]

CHECKS: list[Check] = []
check = registrar(CHECKS)


def refused_without_fencing_code(code: grpc.StatusCode, what: str) -> None:
    expect(code != Code.OK, f"{what} was accepted")
    expect(code != FP, f"{what} answered FAILED_PRECONDITION, which is reserved for fencing")


# -- lifecycle -------------------------------------------------------------------------------------


@check(
    "lifecycle",
    "round-trip",
    "Speculative -> Idle -> Configured -> Idle -> Speculative with operation ids",
)
async def lifecycle_round_trip(t: Target) -> None:
    mid = await t.fresh(SPEC)
    for call, settled in ((t.create, IDLE), (t.configure, CONFIGURED), (t.drain, IDLE)):
        ack = await call(mid)
        expect(bool(ack.operation_id), f"{call.__name__} returned no operation id")
        await t.settle(mid, {settled})
    code = await status_of(t.delete(mid))
    if code == Code.UNIMPLEMENTED:
        return  # bare metal cannot give machines back
    expect(code == Code.OK, f"delete of an Idle machine failed with {code.name}")
    await t.settle(mid, {SPEC})


def _observable_edges(call: Call) -> set[tuple[int, int]]:
    """What polling may see of one call: either half of it, or all of it between two polls."""
    return {(call.source, call.during), (call.during, call.target), (call.source, call.target)}


@check("lifecycle", "legal-edges", "a polled lifecycle shows only legal adjacent states (B105)")
async def lifecycle_legal_edges(t: Target) -> None:
    walked = (Call.CREATE, Call.CONFIGURE, Call.DRAIN)
    legal = {edge for call in walked for edge in _observable_edges(call)}
    mid = await t.fresh(SPEC)
    seen = [SPEC]
    for call, target in ((t.create, IDLE), (t.configure, CONFIGURED), (t.drain, IDLE)):
        await call(mid)
        while seen[-1] != target:
            state = (await t.get(mid)).state
            if state != seen[-1]:
                seen.append(state)
            expect(len(seen) < 50, "machine never settled")
            await asyncio.sleep(0.005)
    for a, b in itertools.pairwise(seen):
        expect((a, b) in legal, f"illegal observed edge {S.Name(a)} -> {S.Name(b)}")


# -- idempotency -----------------------------------------------------------------------------------


async def _repeat_same_id(
    t: Target, call: Callable[[str], Awaitable[pb.TransitionAck]], mid: str
) -> None:
    first = await call(mid)
    second = await call(mid)
    expect(bool(first.operation_id), "no operation id")
    expect(
        first.operation_id == second.operation_id,
        f"repeat returned {second.operation_id!r}, first was {first.operation_id!r}",
    )


@check("idempotency", "create", "a repeated Create returns the same operation id")
async def idempotent_create(t: Target) -> None:
    await _repeat_same_id(t, t.create, await t.fresh(SPEC))


@check("idempotency", "configure", "a repeated Configure returns the same operation id")
async def idempotent_configure(t: Target) -> None:
    await _repeat_same_id(t, t.configure, await t.fresh(IDLE))


@check("idempotency", "drain", "a repeated Drain returns the same operation id")
async def idempotent_drain(t: Target) -> None:
    await _repeat_same_id(t, t.drain, await t.fresh(CONFIGURED))


@check("idempotency", "delete", "a repeated Delete returns the same id (or is unimplemented)")
async def idempotent_delete(t: Target) -> None:
    mid = await t.fresh(IDLE)
    if await status_of(t.delete(mid)) == Code.UNIMPLEMENTED:
        return
    first = (await t.get(mid)).state
    expect(first in (S.MACHINE_STATE_DELETING, SPEC), "Delete did not start")
    await _repeat_same_id(t, t.delete, mid)


@check("idempotency", "new-transition-new-id", "a new transition mints a new id (B214)")
async def new_transition_new_id(t: Target) -> None:
    mid = await t.fresh(SPEC)
    create = await t.create(mid)
    await t.settle(mid, {IDLE})
    configure = await t.configure(mid)
    expect(create.operation_id != configure.operation_id, "Configure reused Create's id")


@check("idempotency", "parallel-creates", "parallel identical Creates share one id (B401)")
async def parallel_creates(t: Target) -> None:
    mid = await t.fresh(SPEC)
    # Unfenced, as the reference suite sends them: with fresh tokens a lower sequence may
    # arrive after a higher one and be rightly fenced, which says nothing of idempotency.
    unfenced = Token("", 0, 0)
    acks = await asyncio.gather(*(t.create(mid, unfenced) for _ in range(8)))
    expect(len({a.operation_id for a in acks}) == 1, "parallel Creates got different ids")
    await t.settle(mid, {IDLE})


# -- errors ----------------------------------------------------------------------------------------


@check("errors", "get-unknown", "Get of an unknown id is NOT_FOUND")
async def get_unknown(t: Target) -> None:
    code = await status_of(t.get("conformance-no-such-machine"))
    expect(code == Code.NOT_FOUND, f"got {code.name}")


@check("errors", "delete-unknown", "Delete of an unknown id is NOT_FOUND or UNIMPLEMENTED")
async def delete_unknown(t: Target) -> None:
    code = await status_of(t.delete("conformance-no-such-machine"))
    expect(code in (Code.NOT_FOUND, Code.UNIMPLEMENTED), f"got {code.name}")


@check("errors", "drain-speculative", "Drain of a Speculative machine is refused, not with FP")
async def drain_speculative(t: Target) -> None:
    mid = await t.fresh(SPEC)
    refused_without_fencing_code(await status_of(t.drain(mid)), "Drain on Speculative")
    expect((await t.get(mid)).state == SPEC, "the machine moved")


@check("errors", "delete-configured", "Delete of a Configured machine is refused, not with FP")
async def delete_configured(t: Target) -> None:
    mid = await t.fresh(CONFIGURED)
    refused_without_fencing_code(await status_of(t.delete(mid)), "Delete on Configured")
    expect((await t.get(mid)).state == CONFIGURED, "the machine left Configured")


@check("errors", "configure-speculative", "Configure of a Speculative machine is refused (B202)")
async def configure_speculative(t: Target) -> None:
    mid = await t.fresh(SPEC)
    refused_without_fencing_code(await status_of(t.configure(mid)), "Configure on Speculative")


@check("errors", "empty-id", "an empty machine id is INVALID_ARGUMENT (B208)")
async def empty_id(t: Target) -> None:
    for name, call in (("Create", t.create("")), ("Get", t.get(""))):
        code = await status_of(call)
        expect(code == Code.INVALID_ARGUMENT, f"{name} with an empty id got {code.name}")


@check(
    "errors",
    "negative-arguments",
    "a negative grace, epoch or sequence is clamped (OK) or INVALID_ARGUMENT, never FP "
    "(B210, B211)",
)
async def negative_arguments(t: Target) -> None:
    # The reference lets a provider refuse a negative value or clamp it to 0 and go on.
    # Each value gets a machine and a token no earlier call can make stale, so a clamping
    # provider's fence has no reason to refuse it.
    grace_on = await t.fresh(CONFIGURED)
    sequence_on = await t.fresh(SPEC)
    if t.bound:
        # One shard identity whose marks outlive runs: a clamped epoch 0 would be stale on
        # any machine an earlier run touched, so use an id no run has seen. A clamping
        # provider then finds no machine (NOT_FOUND); a validating one refuses the value.
        epoch_on, allowed_epoch = t.unique("conformance-missing-negative-epoch"), Code.NOT_FOUND
        epoch_shard = t.shard_id
    else:
        epoch_on, allowed_epoch = await t.fresh(SPEC), Code.OK
        epoch_shard = f"{t.shard_id}-negative-epoch"
    cases: tuple[tuple[str, grpc.StatusCode, Callable[[], Awaitable[object]]], ...] = (
        ("grace_period_seconds", Code.OK, lambda: t.drain(grace_on, grace=-1)),
        ("shard_epoch", allowed_epoch, lambda: t.create(epoch_on, Token(epoch_shard, -1, 1))),
        (
            "sequence_number",
            Code.OK,
            lambda: t.create(sequence_on, t.fencing_token("negative-sequence", 1, -1)),
        ),
    )
    wrong = []
    for name, clamped, call in cases:  # all three, so one run names every wrong answer
        code = await status_of(call())
        if code not in (clamped, Code.INVALID_ARGUMENT):
            reserved = ", a code reserved for fencing" if code == FP else ""
            wrong.append(
                f"negative {name} got {code.name}{reserved} "
                f"(wanted {clamped.name} or INVALID_ARGUMENT)"
            )
    expect(not wrong, "; ".join(wrong))


# -- list and revision ------------------------------------------------------------------------


@check("list", "state-filter", "a state filter returns exactly machines in those states")
async def list_state_filter(t: Target) -> None:
    await t.fresh(IDLE)
    listing = await t.list((IDLE,))
    expect(len(listing.machines) > 0, "no Idle machine listed")
    expect(all(m.state == IDLE for m in listing.machines), "filter let other states through")


@check("list", "max-results", "max_results caps the page; 0 means no cap")
async def list_max_results(t: Target) -> None:
    everything = await t.list()
    expect(len(everything.machines) >= 2, "need at least two machines to check paging")
    for cap in (1, 2):
        page = await t.list(max_results=cap)
        expect(len(page.machines) == cap, f"max_results {cap} gave {len(page.machines)}")


@check("list", "revision-advances", "a non-empty revision changes after a mutation")
async def revision_advances(t: Target) -> None:
    before = (await t.list()).revision
    if not before:
        return  # cursors are optional
    mid = await t.fresh(SPEC)
    await t.create(mid)
    await t.settle(mid, {IDLE})
    after = (await t.list()).revision
    expect(after != before, "revision did not change after Create")
    delta = await t.list(since=before)
    expect(mid in {m.id for m in delta.machines}, "delta since the old cursor lacks the machine")


@check("list", "garbage-cursor", "a malformed cursor returns the full list (B906)")
async def garbage_cursor(t: Target) -> None:
    full = {m.id for m in (await t.list()).machines}
    garbage = {m.id for m in (await t.list(since=b"\xff not a cursor")).machines}
    expect(garbage == full, "a malformed cursor did not give the full list")


# -- field shape ----------------------------------------------------------------------------------


@check("field-shape", "identity", "every machine has an instance type and a real state")
async def field_identity(t: Target) -> None:
    for m in (await t.list()).machines:
        expect(bool(m.instance_type), f"{m.id} has no instance_type")
        expect(m.state != S.MACHINE_STATE_UNSPECIFIED, f"{m.id} has no state")


@check("field-shape", "prices", "price >= 0 and not NaN; probability in [0, 1]")
async def field_prices(t: Target) -> None:
    for m in (await t.list()).machines:
        expect(
            not math.isnan(m.price_per_hour) and m.price_per_hour >= 0,
            f"{m.id} price {m.price_per_hour}",
        )
        p = m.interruption_probability
        expect(not math.isnan(p) and 0 <= p <= 1, f"{m.id} interruption probability {p}")


@check("field-shape", "host-by-state", "no host while Speculative; a host once Idle (B107)")
async def field_host(t: Target) -> None:
    mid = await t.fresh(SPEC)
    expect(not (await t.get(mid)).HasField("host"), "a Speculative machine has a host")
    await t.create(mid)
    idle = await t.settle(mid, {IDLE})
    expect(idle.HasField("host") and bool(idle.host.ref), "an Idle machine has no host")


# -- transitional observability -------------------------------------------------------------


@check(
    "transitions",
    "observable-create",
    "Get during a Create shows Speculative, Creating or Idle, then Idle",
)
async def observable_create(t: Target) -> None:
    mid = await t.fresh(SPEC)
    await t.create(mid)
    allowed = {SPEC, S.MACHINE_STATE_CREATING, IDLE}
    for _ in range(200):
        state = (await t.get(mid)).state
        expect(state in allowed, f"Get showed {S.Name(state)} during Create")
        if state == IDLE:
            return
        await asyncio.sleep(0.005)
    await t.settle(mid, {IDLE})


@check(
    "transitions",
    "drain-grace-zero",
    "a grace-0 Drain ends in Idle (or Failed with an error) within 10 s",
)
async def drain_grace_zero(t: Target) -> None:
    mid = await t.fresh(CONFIGURED)
    await t.drain(mid, grace=0)
    m = await t.settle(mid, {IDLE, FAILED}, timeout_s=10)
    if m.state == FAILED:
        expect(bool(m.last_error), "Failed without last_error")


# -- fencing ---------------------------------------------------------------------------------------


@check("fencing", "replay-rejected", "an unknown shard is accepted; its replay is refused with FP")
async def fencing_replay(t: Target) -> None:
    mid = await t.fresh(SPEC)
    token = t.fencing_token("fence-a", 5, 10)
    await t.create(mid, token)
    expect(await status_of(t.create(mid, token)) == FP, "an identical token was accepted twice")


@check("fencing", "stale-epoch", "a lower epoch is refused with FP")
async def fencing_stale_epoch(t: Target) -> None:
    mid = await t.fresh(SPEC)
    fence = "fence-b"
    await t.create(mid, t.fencing_token(fence, 3, 1))
    expect(
        await status_of(t.create(mid, t.fencing_token(fence, 2, 99))) == FP, "an older epoch passed"
    )


@check("fencing", "stale-sequence", "an equal or lower sequence in one epoch is refused with FP")
async def fencing_stale_sequence(t: Target) -> None:
    mid = await t.fresh(SPEC)
    fence = "fence-c"
    await t.create(mid, t.fencing_token(fence, 1, 50))
    for sequence in (50, 49):
        code = await status_of(t.create(mid, t.fencing_token(fence, 1, sequence)))
        expect(code == FP, f"sequence {sequence} after 50 got {code.name}")


@check("fencing", "new-epoch-resets", "a new epoch accepts any sequence; the old one is dead")
async def fencing_new_epoch(t: Target) -> None:
    mid = await t.fresh(SPEC)
    fence = "fence-d"
    await t.create(mid, t.fencing_token(fence, 1, 1000))
    await t.settle(mid, {IDLE})
    await t.configure(mid, token=t.fencing_token(fence, 2, 1))
    code = await status_of(t.configure(mid, token=t.fencing_token(fence, 1, 1001)))
    expect(code == FP, f"the old epoch's call got {code.name} (B310)")


@check("fencing", "reads-unfenced", "Get and List work whatever tokens were refused")
async def fencing_reads(t: Target) -> None:
    mid = await t.fresh(SPEC)
    fence = "fence-e"
    await t.create(mid, t.fencing_token(fence, 9, 9))
    await status_of(t.create(mid, t.fencing_token(fence, 1, 1)))
    expect((await t.get(mid)).id == mid, "Get failed after a fenced call")
    expect(mid in {m.id for m in (await t.list()).machines}, "List lost the machine")


@check("fencing", "fence-before-not-found", "a stale token on a missing machine is FP (B301)")
async def fencing_before_not_found(t: Target) -> None:
    fence = "fence-f"
    missing = t.unique("conformance-missing-fenced")
    first = await status_of(t.create(missing, t.fencing_token(fence, 4, 4)))
    expect(first == Code.NOT_FOUND, f"first call on a missing machine got {first.name}")
    again = await status_of(t.create(missing, t.fencing_token(fence, 4, 4)))
    expect(again == FP, f"a stale token on a missing machine got {again.name}")


@check("fencing", "per-machine-marks", "marks are kept per (shard, machine) (B302)")
async def fencing_per_machine(t: Target) -> None:
    a, b = await t.fresh(SPEC), await t.fresh(SPEC)
    fence = "fence-g"
    await t.create(a, t.fencing_token(fence, 1, 100))
    code = await status_of(t.create(b, t.fencing_token(fence, 1, 5)))
    expect(code == Code.OK, f"a lower sequence on another machine got {code.name}")


# -- metadata --------------------------------------------------------------------------------------

META = {
    "bigfleet.lucy.sh/assigned-priority": "1000",
    "example.com/ünïcode": "välue ✓",
    "example.com/empty": "",
    "x": "y" * 512,
}


@check("metadata", "echoed", "shard_metadata and cluster are echoed on Get and List")
async def metadata_echoed(t: Target) -> None:
    mid = await t.fresh(IDLE)
    await t.configure(mid, cluster="echo-cluster", metadata=META)
    m = await t.settle(mid, {CONFIGURED})
    expect(dict(m.shard_metadata) == META, "Get did not echo shard_metadata byte-exact")
    expect(m.cluster == "echo-cluster", f"Get shows cluster {m.cluster!r}")
    listed = {x.id: x for x in (await t.list()).machines}[mid]
    expect(dict(listed.shard_metadata) == META, "List did not echo shard_metadata")
    expect(listed.cluster == "echo-cluster", "List did not echo the cluster")


@check("metadata", "cleared-by-drain", "a completed Drain clears cluster and metadata together")
async def metadata_cleared(t: Target) -> None:
    mid = await t.fresh(IDLE)
    await t.configure(mid, metadata=META)
    await t.settle(mid, {CONFIGURED})
    await t.drain(mid)
    m = await t.settle(mid, {IDLE})
    expect(m.cluster == "", f"cluster {m.cluster!r} survived the drain")
    expect(dict(m.shard_metadata) == {}, "metadata survived the drain")


# -- scale and properties -----------------------------------------------------------------------


@check("scale", "full-list-valid", "a full List has unique ids and valid records (B1101)")
async def full_list_valid(t: Target) -> None:
    machines = (await t.list()).machines
    ids = [m.id for m in machines]
    expect(len(ids) == len(set(ids)), "a machine is listed twice")
    for m in machines:
        expect(bool(m.id), "a machine without an id")
        has_host = m.HasField("host") and bool(m.host.ref)
        if m.state == SPEC:
            expect(not has_host and not m.cluster, f"{m.id}: Speculative with host or cluster")
        if m.state == CONFIGURED:
            expect(has_host and bool(m.cluster), f"{m.id}: Configured without host or cluster")


# Which call moves a machine out of which stable state, and where to.
_EDGES = {call.label: (call.source, call.target) for call in Call}


@check(
    "property",
    "random-lifecycle",
    "seeded random calls obey the four-edge model; refusals never use FP (B1203)",
)
async def random_lifecycle(t: Target) -> None:
    rng = random.Random(1203)
    mid = await t.fresh(SPEC)
    state: int = SPEC
    calls: dict[str, Callable[[str], Awaitable[pb.TransitionAck]]] = {
        "create": t.create,
        "configure": t.configure,
        "drain": t.drain,
        "delete": t.delete,
    }
    for _ in range(24):
        name = rng.choice(sorted(calls))
        source, target = _EDGES[name]
        code = await status_of(calls[name](mid))
        if name == "delete" and code == Code.UNIMPLEMENTED:
            continue
        if state == source:
            expect(code == Code.OK, f"{name} from {S.Name(state)} failed with {code.name}")
            state = (await t.settle(mid, {target})).state
        else:
            expect(code != FP, f"{name} from {S.Name(state)} answered FAILED_PRECONDITION")
            if code == Code.OK:  # an idempotent repeat may succeed; it must not move
                expect((await t.get(mid)).state == state, f"{name} moved the machine")


# Last: it restarts the provider, which every other check can do without.
CHECKS += durability.CHECKS
