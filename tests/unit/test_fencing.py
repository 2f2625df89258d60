"""Fencing refuses zombie senders; epochs only ever grow and are persisted before use."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bigfleet.errors import CorruptFencingFile, StaleFencingToken, StaleTerm
from bigfleet.fencing import FenceBook, FencingToken, SequenceCounter, TermFence, advance_epoch


def token(epoch: int, sequence: int, shard: str = "shard-0") -> FencingToken:
    return FencingToken(shard_id=shard, epoch=epoch, sequence=sequence)


def test_fence_book_admits_strictly_newer_tokens_only() -> None:
    book = FenceBook()
    book.admit("m1", token(1, 5))
    book.admit("m1", token(1, 6))
    for stale in (token(1, 6), token(1, 2), token(0, 99)):
        with pytest.raises(StaleFencingToken):
            book.admit("m1", stale)
    assert book.mark("shard-0", "m1") == token(1, 6)


def test_a_higher_epoch_wins_whatever_its_sequence() -> None:
    book = FenceBook()
    book.admit("m1", token(1, 1000))
    book.admit("m1", token(2, 1))
    with pytest.raises(StaleFencingToken, match="not newer than"):
        book.admit("m1", token(1, 1001))  # the zombie from epoch 1


def test_marks_are_per_machine_so_concurrent_calls_may_arrive_out_of_order() -> None:
    book = FenceBook()
    book.admit("m2", token(1, 8))
    book.admit("m1", token(1, 7))  # older sequence, different machine: fine
    assert book.mark("shard-0", "m1") == token(1, 7)


def test_marks_are_per_shard() -> None:
    book = FenceBook()
    book.admit("m1", token(5, 5, shard="shard-a"))
    book.admit("m1", token(1, 1, shard="shard-b"))
    assert book.mark("shard-b", "m1") == token(1, 1, shard="shard-b")


def test_stale_fencing_token_maps_to_failed_precondition() -> None:
    import grpc

    assert StaleFencingToken.code is grpc.StatusCode.FAILED_PRECONDITION


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from("ab")), max_size=40)
)
def test_accepted_tokens_strictly_increase_per_machine(calls: list[tuple[int, int, str]]) -> None:
    book = FenceBook()
    accepted: dict[str, list[tuple[int, int]]] = {}
    for epoch, sequence, machine in calls:
        try:
            book.admit(machine, token(epoch, sequence))
        except StaleFencingToken:
            previous = accepted[machine][-1]
            assert (epoch, sequence) <= previous
        else:
            accepted.setdefault(machine, []).append((epoch, sequence))
    for history in accepted.values():
        assert history == sorted(set(history))


def test_term_fence_refuses_lower_terms_and_advances_on_higher() -> None:
    fence = TermFence()
    fence.admit(3)
    fence.admit(3)  # equal is accepted
    fence.admit(5)
    with pytest.raises(StaleTerm):
        fence.admit(4)
    assert fence.high_water == 5


def test_a_persisted_term_fence_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data" / "coordinator-term"
    fence = TermFence(path)
    fence.admit(2)
    fence.admit(2)
    assert path.read_text() == "2\n"
    restarted = TermFence(path)  # a new process on the same data dir
    assert restarted.high_water == 2
    with pytest.raises(StaleTerm):
        restarted.admit(1)
    assert path.read_text() == "2\n"


@pytest.mark.parametrize("content", ["", "two", "-1"])
def test_a_corrupt_term_file_is_fatal(tmp_path: Path, content: str) -> None:
    path = tmp_path / "coordinator-term"
    path.write_text(content)
    with pytest.raises(CorruptFencingFile):
        TermFence(path)


def test_sequence_numbers_are_fresh_for_every_attempt() -> None:
    counter = SequenceCounter()
    assert [counter.next() for _ in range(3)] == [1, 2, 3]


def test_epoch_starts_at_one_and_grows_on_every_start(tmp_path: Path) -> None:
    path = tmp_path / "data" / "epoch"
    assert [advance_epoch(path) for _ in range(3)] == [1, 2, 3]
    assert path.read_text() == "3\n"
    assert not path.with_name("epoch.tmp").exists()


@pytest.mark.parametrize("content", ["", "seven", "0", "-4", "1.5"])
def test_a_corrupt_epoch_file_is_fatal_and_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "epoch"
    path.write_text(content)
    with pytest.raises(CorruptFencingFile):
        advance_epoch(path)
    assert path.read_text() == content
