"""Readable rendering of a run's report: one table of outcomes, one of shortfalls; and,
on request, a chart of its per-cycle counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bigfleet import plot
from bigfleet.sim.runner import CycleCounts, RunResult


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
    if "conditions" in report:
        _closed_loop(report, console)
    if report["shortfalls"]:
        table = Table(title="shortfalls")
        for column in ("priority", "requirements", "deficit", "age (cycles)"):
            table.add_column(column)
        for s in report["shortfalls"]:
            deficit = ", ".join(f"{k}={v}" for k, v in s["deficit"].items())
            table.add_row(str(s["priority"]), s["requirements"], deficit, str(s["age_cycles"]))
        console.print(table)


def _closed_loop(report: dict[str, Any], console: Console) -> None:
    """A closed-loop run's Pods, cycle times and declared conditions."""
    pods = report["pods"]
    table = Table(title="closed loop", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row(
        "Pods",
        f"target {pods['target']}, live {pods['live']}, bound {pods['bound']}, "
        f"pending {pods['pending']}; evicted {pods['evicted']} in the run",
    )
    tiers = report["configured_by_tier"]
    table.add_row("Configured by tier", ", ".join(f"{k} {v}" for k, v in tiers.items()))
    times = report["cycle_time_ms"]
    table.add_row(
        "cycle time (ms)",
        f"decision p50 {times['decision']['p50']}, p99 {times['decision']['p99']}; "
        f"whole cycle p50 {times['whole_cycle']['p50']}, p99 {times['whole_cycle']['p99']}",
    )
    for c in report["conditions"]:
        mark = "[green]held[/green]" if c["held"] else "[red]failed[/red]"
        table.add_row(c["condition"], f"{mark}  {c['detail']}")
    console.print(table)


def panels(result: RunResult) -> list[plot.Panel]:
    """The run's per-cycle counters as chart panels: machines, churn by kind, shortfalls;
    and for a closed-loop run its Pods (bound, pending) and the wanted-capacity probe."""
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
        *_pod_panels(counts),
    ]


def _pod_panels(counts: list[CycleCounts]) -> list[plot.Panel]:
    if not counts or any(c.pods is None for c in counts):
        return []
    pods = [c.pods or {} for c in counts]
    return [
        plot.Panel(
            "Pods: bound against the target",
            {"target": [p["target"] for p in pods], "bound": [p["bound"] for p in pods]},
            y_label="Pods",
        ),
        plot.Panel(
            "Pods: pending and evicted; reclaims of wanted machines (probe)",
            {
                "pending": [p["pending"] for p in pods],
                "evicted": [p["evicted"] for p in pods],
                "probe": [p["probe"] for p in pods],
            },
            y_label="count",
        ),
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
