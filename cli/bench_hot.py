"""Printing `bigfleet bench engine --shape bench-hot`: settling, then the timed cycles."""

from __future__ import annotations

from pathlib import Path

import click

from bigfleet.cli.options import write_json


def hot(cycles: int, seed: int, settle_rounds: int, json_path: Path | None) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from bigfleet.bench import hot
    from bigfleet.bench.settle import NotSettled

    console = Console()
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("settling the fleet", total=cycles)
            result = hot.run(
                cycles,
                seed,
                settle_rounds,
                progress=lambda done: bar.update(task, completed=done),
                on_settled=lambda rounds: bar.update(task, description="cycles"),
            )
    except NotSettled as err:
        raise click.ClickException(str(err)) from err
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
