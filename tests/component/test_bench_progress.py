"""A long bench says what it is doing while it runs, not only at the end."""

from __future__ import annotations

from bigfleet.bench import shard


def test_the_shard_bench_reports_each_step_as_it_goes() -> None:
    told: list[str] = []
    result = shard.run(streams=5, seconds=2.0, machines=20, stage=told.append, big_rollup=2000)
    assert result.rollups > 0
    assert result.big_rollups > 0  # the large cluster's roll-ups were taken too
    assert 0 < result.hello_wait_ms["p50"] <= result.hello_wait_ms["max"]  # probes answered
    assert told[0].startswith("starting the fake provider (20 machines)")
    assert any(t.startswith("timing idle cycles") for t in told)
    loaded = [t for t in told if t.startswith("5 streams sending roll-ups")]
    assert loaded, told  # counted while the load runs, several times
