"""Readable rendering of a run's report: one table of outcomes, one of shortfalls."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


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
