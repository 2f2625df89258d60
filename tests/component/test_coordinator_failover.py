"""Repeated leader kills of real coordinator processes lose no acknowledged write;
rebalancing moves finish between live (scripted) shards on the same etcd."""

from __future__ import annotations

from bigfleet.bench import coordinator as bench


def test_repeated_leader_kills_lose_no_acknowledged_write_and_moves_finish() -> None:
    # The benchmark's own rounds: acknowledged registrations, SIGKILL the leader,
    # wait for a successor, compare what it lists with everything acknowledged;
    # then a few rebalancing moves, each of which must complete.
    steps: list[float] = []
    result = bench.run(
        kills=4, moves=3, machines=1000, progress=lambda done, last: steps.append(last)
    )
    assert len(steps) == result.kills + result.rebalance_moves == 7
    assert result.lost_writes == 0
    assert all(seconds > 0 for seconds in steps)
    assert result.rebalance_s["p50"] > 0
