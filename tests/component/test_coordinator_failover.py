"""Repeated leader kills of real coordinator processes lose no acknowledged write."""

from __future__ import annotations

from coordinator import bench


def test_repeated_leader_kills_lose_no_acknowledged_write() -> None:
    # The benchmark's own rounds: acknowledged registrations, SIGKILL the leader,
    # wait for a successor, compare what it lists with everything acknowledged.
    rounds: list[float] = []
    result = bench.run(kills=4, progress=lambda done, last: rounds.append(last))
    assert len(rounds) == result.kills == 4
    assert result.lost_writes == 0
    assert all(seconds > 0 for seconds in rounds)
