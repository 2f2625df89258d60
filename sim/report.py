"""Readable rendering of a run's report: one table of outcomes, one of shortfalls; and,
on request, a chart of its per-cycle counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bigfleet import plot
from bigfleet.sim.runner import RunResult


def render(report: dict[str, Any], problems: list[str], console: Console) -> None:
    state = report["final_state"]
    by_state = state["by_state"]
    hardware = sum(n for s, n in by_state.items() if s not in ("Speculative", "Failed"))
    configured = by_state.get("Configured", 0)
    summary = Table(
        title=f"{report['scenario']} (seed {report['seed']}, {report['cycles']} cycles)",
        show_header=False,
    )
    summary.add_column("what", style="bold")
    summary.add_column("value")
    summary.add_row(
        "machines", f"{state['total']}  " + ", ".join(f"{k} {v}" for k, v in by_state.items())
    )
    summary.add_row(
        "utilization",
        f"{configured / hardware:.0%} of machines with hardware are Configured"
        if hardware
        else "no hardware",
    )
    summary.add_row("cost per hour", f"${report['cost_per_hour']:.2f}")
    summary.add_row("interruptions", str(report["interruptions"]))
    summary.add_row(
        "actions", ", ".join(f"{k} {v}" for k, v in report["actions_by_kind"].items()) or "none"
    )
    summary.add_row(
        "verdict",
        "[green]as expected[/green]" if not problems else "[red]" + "; ".join(problems) + "[/red]",
    )
    console.print(summary)
    if report["shortfalls"]:
        table = Table(title="shortfalls")
        for column in ("priority", "requirements", "deficit", "age (cycles)"):
            table.add_column(column)
        for s in report["shortfalls"]:
            deficit = ", ".join(f"{k}={v}" for k, v in s["deficit"].items())
            table.add_row(str(s["priority"]), s["requirements"], deficit, str(s["age_cycles"]))
        console.print(table)


def panels(result: RunResult) -> list[plot.Panel]:
    """The run's per-cycle counters as chart panels: machines, churn by kind, shortfalls."""
    counts = result.counters
    machines: dict[str, list[float]] = {}
    if all(c.demand is not None for c in counts):
        machines["demand"] = [c.demand or 0 for c in counts]
    machines["Configured"] = [c.configured for c in counts]
    kinds = list(counts[0].actions) if counts else []
    return [
        plot.Panel("machines", machines, y_label="machines"),
        plot.Panel(
            "churn: actions the executor took on, by kind",
            {kind: [c.actions[kind] for c in counts] for kind in kinds},
            y_label="actions",
            stacked=True,
        ),
        plot.Panel("shortfalls", {"shortfalls": [c.shortfalls for c in counts]}, y_label="entries"),
    ]


def chart(result: RunResult, path: Path) -> None:
    """Draw the run's per-cycle counters to `path` (PNG or SVG, by its suffix)."""
    plot.draw(
        path,
        f"{result.scenario} (seed {result.seed:#x}, {len(result.counters)} cycles)",
        "cycle",
        range(1, len(result.counters) + 1),
        panels(result),
    )
