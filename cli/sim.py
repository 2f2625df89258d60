"""`bigfleet sim`: run the deterministic simulator's scenarios."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bigfleet.cli import options


@click.group()
def sim() -> None:
    """Drive the real decision engine against the fake provider, deterministically."""


@sim.command("list")
def list_scenarios() -> None:
    """List the shipped scenarios."""
    from bigfleet.sim.closedloop import spec
    from bigfleet.sim.scenario import Scenario, catalog

    for name, path in catalog().items():
        scenario = Scenario.load(path)
        click.echo(f"{name:28} {scenario.kind:11} {' '.join(scenario.description.split())}")
    for name, path in spec.catalog().items():
        closed = spec.ClosedLoopScenario.load(path)
        click.echo(f"{name:28} {closed.kind:11} {' '.join(closed.description.split())}")


@sim.command()
@click.argument("scenario")
@click.option(
    "--seed",
    default=None,
    type=options.SEED,
    help="RNG seed, decimal or 0x hex [default: the scenario's: 0xCAFEBABE for the soak "
    "(the spec's), else 0xC0FFEE].",
)
@click.option(
    "--cycles",
    default=None,
    type=click.IntRange(min=0),
    help="Soak: churn cycles. Scripted: steady cycles added after the timeline. "
    "Closed loop: cycles run instead of the scenario's.",
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSONL trace here.",
)
@click.option(
    "--report-json",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report as JSON here.",
)
@options.plot_output(
    "the per-cycle counters (machines, churn by action kind, shortfalls; Pods in closed-loop runs)"
)
def run(
    scenario: str,
    seed: int | None,
    cycles: int | None,
    trace_path: Path | None,
    report_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Run SCENARIO (a name from `bigfleet sim list`, or a YAML file).

    Prints a table of outcomes; exits 1 when the scenario's expectations, the
    soak invariants or a closed-loop scenario's declared pass conditions do
    not hold (the failed ones are listed).
    """
    from rich.console import Console
    from rich.progress import Progress

    from bigfleet.sim import runner
    from bigfleet.sim.closedloop import loop, spec
    from bigfleet.sim.report import chart, render
    from bigfleet.sim.scenario import find

    console = Console(stderr=False)
    try:
        closed = spec.find(scenario) if _closed_loop(scenario) else None
        chosen = None if closed is not None else find(scenario)
    except KeyError as err:
        raise click.BadParameter(str(err.args[0]), param_hint="SCENARIO") from err
    if closed is not None:
        total = cycles if cycles is not None else closed.cycles
        name = closed.name
    else:
        assert chosen is not None
        seed = runner.default_seed(chosen) if seed is None else seed
        total = (cycles if cycles is not None else chosen.soak.cycles) if chosen.soak else 0
        name = chosen.name
    with Progress(console=console, transient=True, disable=total < 200) as bar:
        task = bar.add_task(f"simulating {name}", total=total)

        def progress(done: int) -> None:
            bar.update(task, completed=done)

        if closed is not None:
            result = loop.run(closed, seed, cycles, progress)
        else:
            assert chosen is not None
            result = runner.run(chosen, seed, cycles, progress)
    if trace_path:
        trace_path.write_text(result.trace.text())
    if report_path:
        report_path.write_text(json.dumps(result.report, indent=2) + "\n")
    if plot_path:
        chart(result, plot_path)
    render(result.report, result.problems, console)
    sys.exit(0 if result.ok else 1)


def _closed_loop(name_or_path: str) -> bool:
    """Whether SCENARIO names a closed-loop scenario (by name, or a file of that kind)."""
    import yaml

    from bigfleet.sim.closedloop import spec

    path = Path(name_or_path)
    if path.is_file():
        loaded = yaml.safe_load(path.read_text())
        return isinstance(loaded, dict) and loaded.get("kind") == "closed-loop"
    return name_or_path in spec.catalog()


@sim.command()
@click.argument("names", nargs=-1)
def record(names: tuple[str, ...]) -> None:
    """Write golden traces of scripted scenarios (all when none are named)."""
    from bigfleet.sim import runner
    from bigfleet.sim.scenario import GOLDEN_DIR, catalog, find

    for name in names or [n for n in catalog() if find(n).kind == "scripted"]:
        result = runner.run(find(name))
        (GOLDEN_DIR / f"{name}.jsonl").write_text(result.trace.text())
        click.echo(f"recorded {name} ({len(result.trace.lines)} lines)")


@sim.command()
def verify() -> None:
    """Re-run every golden scenario: trace byte-identical and expectations met."""
    from bigfleet.sim import runner
    from bigfleet.sim.scenario import GOLDEN_DIR, find

    failed = 0
    goldens = sorted(GOLDEN_DIR.glob("*.jsonl"))
    for golden in goldens:
        result = runner.run(find(golden.stem))
        same = result.trace.text() == golden.read_text()
        ok = same and result.ok
        failed += not ok
        why = (
            ""
            if ok
            else (" trace differs" if not same else "") + "".join(f" {p}" for p in result.problems)
        )
        click.echo(f"{'PASS' if ok else 'FAIL'} {golden.stem}{':' if why else ''}{why}")
    click.echo(f"{len(goldens) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not goldens else 0)
