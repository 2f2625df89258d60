"""The fake's `--state` file: what survives a restart, and what a bad file does at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigfleet.errors import MachineNotFound, StaleFencingToken
from bigfleet.fencing import FencingToken
from bigfleet.providers_fake.config import FleetConfig, LatencyConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.state import Journal, StateFileError, open_journal, read
from bigfleet.wire import provider_pb2 as pb

S = pb.MachineState


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(sequence: int, epoch: int = 1, shard: str = "s") -> FencingToken:
    return FencingToken(shard_id=shard, epoch=epoch, sequence=sequence)


def build(clock: Clock, latency: float = 0.0) -> FakeFleet:
    config = FleetConfig(latency=LatencyConfig(creating=latency, configuring=latency))
    return config.with_quick_seeds(1, 3).build(clock)


def restart(path: Path, clock: Clock, latency: float = 0.0) -> FakeFleet:
    """A new process: the seed config again, then whatever the file holds."""
    fleet = build(clock, latency)
    open_journal(fleet, path)
    return fleet


async def test_machines_marks_operation_ids_and_revision_survive(tmp_path: Path) -> None:
    path, clock = tmp_path / "state.json", Clock()
    fleet = build(clock)
    journal = open_journal(fleet, path)
    create = fleet.create("spec-0", token(10))
    configure = fleet.configure(
        "idle-0", "c1", b"\x00blob\xff", {"k": "välue ✓", "e": ""}, token(1)
    )
    with pytest.raises(MachineNotFound):  # refused, but its fence mark counts
        fleet.create("missing", token(5, shard="zombie"))
    await journal.flush()
    before = fleet.list()

    again = restart(path, Clock(1000.0))  # another process: another clock origin
    assert again.list() == before
    configured = again.get("idle-0")
    assert (configured.cluster, dict(configured.shard_metadata)) == (
        "c1",
        {"k": "välue ✓", "e": ""},
    )
    assert again.bootstrap_blob("idle-0") == b"\x00blob\xff"
    assert again.create("spec-0", token(11)).operation_id == create.operation_id
    assert again.configure("idle-0", "c1", b"", {}, token(2)).operation_id == configure.operation_id
    for stale in (token(11), token(3, epoch=0)):
        with pytest.raises(StaleFencingToken):
            again.create("spec-0", stale)
    with pytest.raises(StaleFencingToken):  # the mark set before not-found, too
        again.create("missing", token(5, shard="zombie"))
    # New operation ids never repeat old ones; cursors from before the restart still work.
    fresh = again.create("spec-1", token(1)).operation_id
    assert fresh not in {create.operation_id, configure.operation_id}
    assert [m.id for m in again.list(since_revision=before.revision).machines] == ["spec-1"]


async def test_a_transition_in_flight_resumes_with_the_time_it_had_left(tmp_path: Path) -> None:
    path, clock = tmp_path / "state.json", Clock()
    fleet = build(clock, latency=10)
    journal = open_journal(fleet, path)
    fleet.create("spec-0", token(1))
    clock.now = 4
    await journal.flush()

    later = Clock(500.0)
    again = restart(path, later, latency=10)
    assert again.get("spec-0").state == S.MACHINE_STATE_CREATING
    later.now = 505.9
    assert again.get("spec-0").state == S.MACHINE_STATE_CREATING
    later.now = 506
    assert again.get("spec-0").state == S.MACHINE_STATE_IDLE


def test_a_missing_file_seeds_and_is_created_an_existing_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.json"
    fleet = build(Clock())
    open_journal(fleet, path)
    saved = read(path)
    assert saved is not None and sorted(s.id for s in saved.slots) == [
        "idle-0",
        "spec-0",
        "spec-1",
        "spec-2",
    ]
    # A different seed later: the file's machines are kept, the seed is not added.
    bigger = FleetConfig().with_quick_seeds(5, 5).build(Clock())
    open_journal(bigger, path)
    assert len(bigger) == 4


async def test_flush_writes_only_after_a_change(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    fleet = build(Clock())
    journal = Journal(fleet, path)
    journal.write_now()
    stamp = path.stat().st_mtime_ns
    path.write_text("overwritten behind its back")
    await journal.flush()  # nothing changed: no write
    assert path.read_text() == "overwritten behind its back"
    fleet.get("spec-0")  # reads change nothing
    await journal.flush()
    assert path.read_text() == "overwritten behind its back"
    fleet.create("spec-0", token(1))
    await journal.flush()
    assert read(path) is not None and path.stat().st_mtime_ns >= stamp


def _valid(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "valid.json"
    fleet = build(Clock(), latency=5)
    open_journal(fleet, path)
    fleet.create("spec-0", token(1))
    Journal(fleet, path).write_now()
    data: dict[str, object] = json.loads(path.read_text())
    return data


def _machine(data: dict[str, object], machine_id: str) -> dict[str, object]:
    machines = data["machines"]
    assert isinstance(machines, list)
    found: dict[str, object] = next(m for m in machines if m["id"] == machine_id)
    return found


@pytest.mark.parametrize(
    ("corrupt", "says"),
    [
        (lambda d: "{not json", "Invalid JSON"),
        (lambda d: "", "Invalid JSON"),
        (lambda d: {**d, "version": 9}, "version"),
        (lambda d: {**d, "revision": -1}, "revision"),
        (lambda d: {**d, "machines": [*d["machines"], d["machines"][0]]}, "appears twice"),
        (lambda d: _machine(d, "spec-0").update(last_op=None) or d, "machine spec-0: in CREATING"),
        (lambda d: _machine(d, "spec-1").update(state=42) or d, "unknown state 42"),
        (lambda d: _machine(d, "spec-1").update(bootstrap_blob="***") or d, "not base64"),
        (lambda d: _machine(d, "spec-1").update(colour="red") or d, "colour"),
    ],
)
def test_a_corrupt_file_stops_the_start_naming_file_and_problem(
    tmp_path: Path, corrupt: object, says: str
) -> None:
    changed = corrupt(_valid(tmp_path))  # type: ignore[operator]
    path = tmp_path / "state.json"
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(StateFileError, match=str(path)) as caught:
        restart(path, Clock())
    assert says in str(caught.value)
    assert path.read_text() == (changed if isinstance(changed, str) else json.dumps(changed))


def test_an_unreadable_path_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "is-a-directory"
    path.mkdir()
    with pytest.raises(StateFileError, match="cannot read"):
        restart(path, Clock())
