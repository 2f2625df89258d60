"""`bigfleet bench`: benchmarks that print figures and write JSON, never pass/fail."""

from __future__ import annotations

from pathlib import Path

import click

from bigfleet.cli import options
from bigfleet.cli.options import json_output, write_json


@click.group()
def bench() -> None:
    """Measure; compare runs side by side."""


SHAPES = ("default", "bench-hot", "m11")
# The reference's largest scale point (m11): sizes fixed, as bench-hot fixes its fleet.
M11_MACHINES, M11_NEEDS, M11_COLOCATED, M11_CLUSTERS = 500_000, 50_000, 0.5, 50
FIXED = ("machines", "needs", "colocated", "clusters", "verdicts")


@bench.command()
@click.option(
    "--shape",
    type=click.Choice(SHAPES),
    default="default",
    show_default=True,
    help="default: the sizes below, random catalog. bench-hot: the reference's co-located "
    "hot-path fleet (18,000 machines, 2,580 needs, 98 % co-located), settled before timing. "
    "m11: the default catalog at the reference's largest scale (500,000 machines, 50,000 "
    "needs, 50 % co-located, 50 clusters).",
)
@click.option("--machines", default=100_000, show_default=True, type=click.IntRange(min=1))
@click.option("--needs", default=2_600, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--colocated",
    default=0.93,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction of needs that are co-location gangs (Same on a rack).",
)
@click.option("--clusters", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--cycles",
    type=click.IntRange(min=1),
    help="Warm cycles measured of each kind (default 20; 200 for bench-hot and m11).",
)
@click.option("--seed", default=1, show_default=True, type=options.SEED)
@click.option(
    "--settle-rounds",
    default=60,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rounds allowed to settle the fleet (decide and apply under constant demand until a "
    "round decides nothing) before the bench fails.",
)
@click.option(
    "--verdicts/--no-verdicts",
    default=True,
    show_default=True,
    help="Keep per-need verdicts, as the shard does (off: measure what keeping them costs).",
)
@json_output
@click.pass_context
def engine(
    ctx: click.Context,
    shape: str,
    machines: int,
    needs: int,
    colocated: float,
    clusters: int,
    cycles: int | None,
    seed: int,
    settle_rounds: int,
    verdicts: bool,
    json_path: Path | None,
) -> None:
    """Decision-cycle time on a synthetic fleet: per phase and whole cycle, p50/p99 in ms."""
    from bigfleet.shard.engine import BUILD

    click.echo(f"decision engine: {BUILD} (BIGFLEET_ENGINE=python|compiled chooses)")
    if shape != "default":
        given = [
            name
            for name in FIXED
            if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(f"--shape {shape} fixes its own fleet; drop {', '.join(given)}")
    if shape == "bench-hot":
        from bigfleet.cli.bench_hot import hot

        hot(cycles or 200, seed, settle_rounds, json_path)
        return
    if shape == "m11":
        machines, needs, colocated, clusters = M11_MACHINES, M11_NEEDS, M11_COLOCATED, M11_CLUSTERS
    _default_shape(
        shape,
        machines,
        needs,
        colocated,
        clusters,
        cycles or (20 if shape == "default" else 200),
        seed,
        settle_rounds,
        verdicts,
        json_path,
    )


def _default_shape(
    shape: str,
    machines: int,
    needs: int,
    colocated: float,
    clusters: int,
    cycles: int,
    seed: int,
    settle_rounds: int,
    verdicts: bool,
    json_path: Path | None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from bigfleet.bench import engine as bench_engine
    from bigfleet.cli.bench_hot import run_settled

    console = Console()
    result = run_settled(
        console,
        cycles,
        lambda progress, on_settled: bench_engine.run(
            machines,
            needs,
            clusters,
            colocated,
            cycles,
            seed,
            progress=progress,
            verdicts=verdicts,
            settle_bound=settle_rounds,
            on_settled=on_settled,
        ),
    )
    table = Table(
        title=f"engine: {result.machines:,} machines, {result.needs:,} needs, "
        f"{result.clusters} clusters, {result.colocated:.0%} co-located; "
        f"settled after {result.settled_rounds} rounds"
    )
    for column in ("", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "cycle after a roll-up change", str(result.cycle_ms["p50"]), str(result.cycle_ms["p99"])
    )
    for phase, figures in result.phases_ms.items():
        table.add_row(phase, str(figures["p50"]), str(figures["p99"]))
    table.add_row(
        "cycle, nothing changed",
        str(result.steady_cycle_ms["p50"]),
        str(result.steady_cycle_ms["p99"]),
    )
    table.add_row(
        "cycle after Idle supply changed",
        str(result.machine_change_cycle_ms["p50"]),
        str(result.machine_change_cycle_ms["p99"]),
    )
    if result.verdict_read_ms is not None:
        table.add_row(
            "one cluster's verdicts read",
            str(result.verdict_read_ms["p50"]),
            str(result.verdict_read_ms["p99"]),
        )
    console.print(table)
    console.print(
        f"first cycle {result.first_cycle_ms} ms; peak RSS {result.peak_rss_mb} MiB; "
        f"{result.bytes_per_machine} bytes per machine in the inventory"
    )
    write_json(json_path, {"shape": shape, **result.as_json()})


@bench.command("chain")
@click.option(
    "--pods",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Replicas of one Deployment (1 CPU each, 8 per machine), all unschedulable at first.",
)
@json_output
def chain_bench(pods: int, json_path: Path | None) -> None:
    """Unschedulable Pods bound through the whole chain on the local control plane.

    Starts its own kube-apiserver, controller-manager, scheduler and kwok, and
    the fake provider (booting Nodes), shard, operator and pod controller as
    processes; reports all-bound time and CapacityRequest-to-bound p50/p99.
    """
    from rich.progress import Progress

    from bigfleet.bench import chain as chain_bench_

    with Progress(transient=True) as bar:
        task = bar.add_task("pods bound", total=pods)
        result = chain_bench_.run(pods, lambda done: bar.update(task, completed=done))
    b = result.bind_s
    click.echo(
        f"{result.pods} pods bound on {result.nodes} nodes in {result.all_bound_s} s; "
        f"CapacityRequest created to pod scheduled p50/p99 {b['p50']}/{b['p99']} s"
    )
    calls = ", ".join(f"{k} {v}" for k, v in result.calls_per_pod.items())
    click.echo(f"API server requests per pod: {calls}")
    written = ", ".join(f"{k} {v}" for k, v in result.events_per_pod.items())
    click.echo(f"Events per pod (component, reason): {written}")
    write_json(json_path, result.as_json())


@bench.command("shard")
@click.option(
    "--streams",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent operator streams.",
)
@click.option(
    "--seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="How long the streams send roll-ups.",
)
@click.option(
    "--machines",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Machines the fake provider serves (half Idle, half Speculative).",
)
@click.option(
    "--big-rollup",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=1_000_000),
    help="Add one stream whose roll-ups carry this many needs (0: none).",
)
@click.option(
    "--every",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0, max=3600),
    help="Each stream sends a roll-up every this many seconds (0: as soon as the last is "
    "acknowledged, the most the shard can take).",
)
@json_output
def shard_bench(
    streams: int,
    seconds: float,
    machines: int,
    big_rollup: int,
    every: float,
    json_path: Path | None,
) -> None:
    """Roll-ups per second into one shard process over many streams; cycle time idle vs
    loaded; how long a new cluster's Hello waits for its acknowledgement meanwhile."""
    from rich.console import Console

    from bigfleet.bench import shard as bench_shard

    with Console(stderr=True).status("starting") as status:
        result = bench_shard.run(
            streams, seconds, machines, stage=status.update, big_rollup=big_rollup, every=every
        )
    click.echo(
        f"{result.streams} streams, {result.seconds} s: {result.rollups} roll-ups "
        f"acknowledged, {result.rollups_per_s}/s"
    )
    for label, idle, loaded in (
        ("cycle", result.cycle_ms_idle, result.cycle_ms_loaded),
        ("compute", result.compute_ms_idle, result.compute_ms_loaded),
    ):
        click.echo(
            f"{label} ms p50/p99 idle {idle['p50']}/{idle['p99']}, while ingesting "
            f"{loaded['p50']}/{loaded['p99']} (from the shard's histograms)"
        )
    wait = result.hello_wait_ms
    click.echo(
        f"a new cluster's Hello acknowledged in p50/p99/max {wait['p50']}/{wait['p99']}/"
        f"{wait['max']} ms while ingesting; {result.hellos_over_100ms} waited over 100 ms"
    )
    if big_rollup:
        click.echo(f"{result.big_rollups} roll-ups of {big_rollup:,} needs acknowledged")
    write_json(json_path, result.as_json())


@bench.command("operator")
@click.option(
    "--crs",
    default=25_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="CapacityRequests to roll up; all of them are then acknowledged.",
)
@click.option("--ack-concurrency", default=16, show_default=True, type=click.IntRange(min=1))
@json_output
def operator_bench(crs: int, ack_concurrency: int, json_path: Path | None) -> None:
    """Roll-up build p50/p99 over N CRs; seconds to acknowledge them on a real API server."""
    from rich.console import Console

    from bigfleet.bench import operator as operator_bench_

    with Console(stderr=True).status("starting") as status:
        result = operator_bench_.run(crs, ack_concurrency, stage=status.update)
    click.echo(
        f"{result.crs} CRs -> {result.needs_out} needs; roll-up build p50/p99 "
        f"{result.rollup_ms['p50']}/{result.rollup_ms['p99']} ms cold, "
        f"{result.rollup_steady_ms['p50']}/{result.rollup_steady_ms['p99']} ms steady; "
        "acknowledged all in "
        f"{result.ack_seconds} s"
    )
    write_json(json_path, result.as_json())


@bench.command("coordinator")
@click.option(
    "--kills",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Leader kills (SIGKILL), one per round.",
)
@click.option("--lease-ttl", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--moves",
    default=30,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rebalancing moves to time (idle machines handed between shards).",
)
@click.option(
    "--machines",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=16),
    help="Machines per shard (three shards) in the rebalance part.",
)
@click.option(
    "--etcd-election-timeout",
    type=click.IntRange(min=50),
    default=None,
    help="Milliseconds, for the bench's etcd (its default: 1000). etcd grants no lease "
    "shorter than 1.5x this, so --lease-ttl 1 needs 500 or less.",
)
@json_output
def coordinator_bench(
    kills: int,
    lease_ttl: int,
    moves: int,
    machines: int,
    etcd_election_timeout: int | None,
    json_path: Path | None,
) -> None:
    """Failover p50/p99/max, lost acknowledged writes, and rebalance latency.

    Starts its own three-member etcd and three coordinator processes for the
    leader kills; then times rebalancing moves between three scripted shards
    of --machines machines (shortfall report to the recipient's claim
    acknowledged).
    """
    from rich.progress import Progress

    from bigfleet.bench import coordinator as coordinator_bench_

    with Progress(transient=True) as bar:
        task = bar.add_task("leader kills, then moves", total=kills + moves)
        steps = iter(range(1, kills + moves + 1))
        result = coordinator_bench_.run(
            kills,
            lease_ttl,
            moves,
            machines,
            lambda _done, _last: bar.update(task, completed=next(steps)),
            election_timeout_ms=etcd_election_timeout,
        )
    f, r = result.failover_s, result.rebalance_s
    click.echo(
        f"{result.kills} leader kills, lease TTL {result.lease_ttl_s} s, etcd election timeout "
        f"{result.etcd_election_timeout_ms} ms: failover p50/p99/max "
        f"{f['p50']}/{f['p99']}/{f['max']} s; acknowledged writes lost: {result.lost_writes}"
    )
    click.echo(
        f"{result.rebalance_moves} rebalancing moves, 3 shards x {machines} machines: "
        f"report to claim acknowledged p50/p99 {r['p50']}/{r['p99']} s"
    )
    write_json(json_path, result.as_json())


@bench.command("fuzz")
@click.option(
    "--seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="How long to send fuzzed operator streams.",
)
@click.option("--seed", default=1, show_default=True, type=options.SEED)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Streams open at once.",
)
@json_output
def fuzz(seconds: float, seed: int, concurrency: int, json_path: Path | None) -> None:
    """Random and adversarial operator frames against a real shard: streams by final status,
    crashes (must be 0), RSS before and after, and whether a well-behaved operator is served."""
    from bigfleet.bench import fuzz as bench_fuzz

    result = bench_fuzz.run(seconds, seed, concurrency, progress=lambda _: None)
    click.echo(
        f"{result.seconds:g} s, seed {result.seed}: {result.streams} streams, "
        f"{result.frames_sent} frames sent"
    )
    click.echo(
        "frames generated by kind: "
        + ", ".join(f"{k} {n}" for k, n in result.frames_by_kind.items())
    )
    click.echo(
        "streams by final status: "
        + ", ".join(f"{k} {n}" for k, n in result.streams_by_status.items())
    )
    click.echo(
        f"ended OK {result.ended_ok}, hung {result.hung}, crashes {result.crashes}, "
        f"provider machines changed {result.machines_changed}, "
        f"well-behaved operator served {result.well_behaved_served}"
    )
    click.echo(
        f"clusters held at the end {result.clusters_known}; RSS {result.rss_before_mb} MB "
        f"before, {result.rss_after_mb} MB after"
    )
    write_json(json_path, result.as_json())
