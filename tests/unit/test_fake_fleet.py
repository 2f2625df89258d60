"""The fake provider's machine lifecycle: latency, fencing, idempotency, faults, cursors."""

from __future__ import annotations

import pytest

from bigfleet.errors import InvalidRequest, InvalidTransition, MachineNotFound, StaleFencingToken
from bigfleet.fencing import FencingToken
from bigfleet.providers_fake.config import FleetConfig, Pool
from bigfleet.providers_fake.fleet import FakeFleet, Latency, Slot
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fleet(clock: Clock, **kwargs: object) -> FakeFleet:
    f = FakeFleet(clock=clock, **kwargs)  # type: ignore[arg-type]
    for i in range(3):
        f.add(
            Slot(
                id=f"m-{i}",
                state=S.MACHINE_STATE_SPECULATIVE,
                instance_type="t",
                zone="z",
                capacity_type=pb.CAPACITY_TYPE_ON_DEMAND,
                price_per_hour=1.0,
                interruption_probability=0.0,
                resources={"cpu": "8"},
            )
        )
    return f


class Tokens:
    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, epoch: int = 1) -> FencingToken:
        self.sequence += 1
        return FencingToken(shard_id="s", epoch=epoch, sequence=self.sequence)


def test_transitions_dwell_for_their_latency_then_complete() -> None:
    clock, token = Clock(), Tokens()
    f = fleet(clock, latency=Latency(creating=5, configuring=2))
    ack = f.create("m-0", token())
    assert ack.machine.state == S.MACHINE_STATE_CREATING
    clock.now = 4.9
    assert f.get("m-0").state == S.MACHINE_STATE_CREATING
    clock.now = 5.0
    idle = f.get("m-0")
    assert idle.state == S.MACHINE_STATE_IDLE and idle.host.ref == "host-m-0"
    f.configure("m-0", "c1", b"blob", {"k": "v"}, token())
    clock.now = 7.0
    configured = f.get("m-0")
    assert (configured.state, configured.cluster) == (S.MACHINE_STATE_CONFIGURED, "c1")
    assert dict(configured.shard_metadata) == {"k": "v"}


def test_fence_comes_before_everything_and_zero_tokens_are_unfenced() -> None:
    clock = Clock()
    f = fleet(clock)
    f.create("m-0", FencingToken(shard_id="s", epoch=2, sequence=1))
    with pytest.raises(StaleFencingToken):
        f.create("m-0", FencingToken(shard_id="s", epoch=1, sequence=9))
    with pytest.raises(MachineNotFound):
        f.create("nope", FencingToken(shard_id="s", epoch=1, sequence=1))
    with pytest.raises(StaleFencingToken):  # the mark was recorded before the lookup
        f.create("nope", FencingToken(shard_id="s", epoch=1, sequence=1))
    zero = FencingToken(shard_id="", epoch=0, sequence=0)
    f.configure("m-0", "c", b"", {}, zero)
    f.drain("m-0", 0, zero)


def test_repeats_return_the_operation_id_and_out_of_position_calls_fail() -> None:
    clock, token = Clock(), Tokens()
    f = fleet(clock, latency=Latency(creating=1))
    first = f.create("m-1", token())
    assert f.create("m-1", token()).operation_id == first.operation_id  # in flight
    clock.now = 1
    assert f.create("m-1", token()).operation_id == first.operation_id  # completed
    with pytest.raises(InvalidTransition):
        f.drain("m-1", 0, token())
    with pytest.raises(InvalidRequest):
        f.drain("m-1", -1, token())


def test_one_shot_failure_fails_only_the_named_transition() -> None:
    clock, token = Clock(), Tokens()
    f = fleet(clock)
    f.fail_next("m-0", S.MACHINE_STATE_CONFIGURED, "disk on fire")
    f.create("m-0", token())
    assert f.get("m-0").state == S.MACHINE_STATE_IDLE  # not the target of the fault
    f.configure("m-0", "c", b"", {}, token())
    failed = f.get("m-0")
    assert (failed.state, failed.last_error) == (S.MACHINE_STATE_FAILED, "disk on fire")
    with pytest.raises(InvalidTransition):  # Failed is terminal
        f.drain("m-0", 0, token())


def test_transition_longer_than_the_timeout_fails_at_the_timeout() -> None:
    clock, token = Clock(), Tokens()
    f = fleet(clock, latency=Latency(creating=100), transition_timeout=10)
    f.create("m-0", token())
    clock.now = 9.9
    assert f.get("m-0").state == S.MACHINE_STATE_CREATING
    clock.now = 10
    failed = f.get("m-0")
    assert failed.state == S.MACHINE_STATE_FAILED
    assert "timed out" in failed.last_error


def test_seeded_failure_rate_is_reproducible() -> None:
    def outcome(seed: int) -> list[int]:
        token = Tokens()
        f = fleet(Clock(), failure_rate=0.5, seed=seed)
        for i in range(3):
            f.create(f"m-{i}", token())
        return [f.get(f"m-{i}").state for i in range(3)]

    assert outcome(7) == outcome(7)
    assert {s for seed in range(20) for s in outcome(seed)} == {
        S.MACHINE_STATE_IDLE,
        S.MACHINE_STATE_FAILED,
    }


def test_list_cursor_returns_only_what_changed() -> None:
    clock, token = Clock(), Tokens()
    f = fleet(clock)
    cursor = f.list().revision
    assert list(f.list(since_revision=cursor).machines) == []
    f.create("m-2", token())
    assert [m.id for m in f.list(since_revision=cursor).machines] == ["m-2"]
    assert len(f.list(since_revision=b"garbage").machines) == 3
    with pytest.raises(InvalidRequest):
        f.list(states=[42])


def test_removed_machines_disappear() -> None:
    f = fleet(Clock())
    f.remove_machine("m-0")
    assert [m.id for m in f.list().machines] == ["m-1", "m-2"]
    with pytest.raises(MachineNotFound):
        f.get("m-0")


def test_config_quick_seeds_use_the_default_general_purpose_shape() -> None:
    built = FleetConfig().with_quick_seeds(idle=2, speculative=3).build(Clock())
    machines = {m.id: m for m in built.list().machines}
    assert sorted(machines) == ["idle-0", "idle-1", "spec-0", "spec-1", "spec-2"]
    idle = machines["idle-0"]
    assert idle.state == S.MACHINE_STATE_IDLE and idle.host.ref
    assert dict(idle.resources.resources) == {"cpu": "8", "memory": "32Gi"}
    assert idle.capacity_type == pb.CAPACITY_TYPE_ON_DEMAND
    assert idle.labels["bigfleet.lucy.sh/capacity-type"] == "on-demand"


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="interruption_probability"):
        Pool(prefix="x", count=1, interruption_probability=2)


def test_allocatable_is_filled_from_the_shape_on_every_record() -> None:
    clock, token = Clock(), Tokens()
    f = fleet(clock, latency=Latency(creating=1))
    shape = {"cpu": "8"}
    ack = f.create("m-0", token())
    records = [ack.machine, f.get("m-0"), *f.list().machines]
    clock.now = 1
    records += [f.get("m-0"), f.create("m-0", token()).machine]  # settled, and a repeat's ack
    for m in records:
        assert dict(m.allocatable.resources) == dict(m.resources.resources) == shape, m.id
