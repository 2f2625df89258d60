"""Printing `bigfleet bench engine --shape bench-hot`: settling, then the timed cycles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from bigfleet.cli.options import write_json

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")


def run_settled(
    console: Console,
    cycles: int,
    run: Callable[[Callable[[int], None], Callable[[int], None]], T],
) -> T:
    """Run an engine bench, which settles its fleet before it measures `cycles`, under a
    progress bar; a fleet that does not settle fails the command, saying what still acted.
    `run` is given the bench's `progress` and `on_settled` callbacks."""
    from rich.progress import Progress

    from bigfleet.bench.settle import NotSettled

    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("settling the fleet", total=cycles)
            return run(
                lambda done: bar.update(task, completed=done),
                lambda rounds: bar.update(task, description="cycles"),
            )
    except NotSettled as err:
        raise click.ClickException(str(err)) from err


def hot(cycles: int, seed: int, settle_rounds: int, json_path: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from bigfleet.bench import hot

    console = Console()
    result = run_settled(
        console,
        cycles,
        lambda progress, on_settled: hot.run(
            cycles, seed, settle_rounds, progress=progress, on_settled=on_settled
        ),
    )
    console.print(
        f"bench-hot: {result.machines:,} machines, {result.needs:,} needs "
        f"({result.colocated_needs:,} co-located), {result.clusters} clusters; "
        f"settled after {result.settled_rounds} rounds"
    )
    table = Table(title=f"{result.cycles} measured cycles of each kind")
    for column in ("", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column else "left")

    def row(label: str, figures: dict[str, float]) -> None:
        table.add_row(label, str(figures["p50"]), str(figures["p99"]))

    row("cycle after a roll-up change", result.cycle_ms)
    for phase, figures in result.phases_ms.items():
        row(f"  {phase}", figures)
    row("cycle, nothing changed", result.steady_cycle_ms)
    row("cycle after Idle supply changed", result.machine_change_cycle_ms)
    for snapshot, figures in result.stateless_phase1_ms.items():
        row(f"stateless Phase 1, fleet {snapshot}", figures)
    for snapshot, figures in result.stateless_phase3_ms.items():
        row(f"reclaim scan, fleet {snapshot}", figures)
    console.print(table)
    console.print(
        f"first (cold) cycle {result.first_cycle_ms} ms; peak RSS {result.peak_rss_mb} MiB; "
        f"{result.bytes_per_machine} bytes per machine in the inventory"
    )
    write_json(json_path, result.as_json())
