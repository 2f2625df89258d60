"""`bigfleet scaletest`: a fleet-shaped run with steady-state gates and failover actions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bigfleet.scaletest import profile as profiles

if TYPE_CHECKING:
    from rich.console import Console


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(profiles.seconds(value))  # type: ignore[arg-type]
    except ValueError as err:
        raise click.BadParameter(str(err)) from err


@click.command()
@click.option(
    "--profile",
    "profile_name",
    required=True,
    metavar="NAME|FILE",
    help=f"A packaged profile ({', '.join(profiles.available())}) or a profile YAML file.",
)
@click.option(
    "--substrate",
    type=click.Choice(["local", "helm"]),
    default="local",
    show_default=True,
    help="local: start every process on this machine (no Docker) and judge the run. "
    "helm: only write Helm values, the load and the install commands for real clusters.",
)
@click.option(
    "--duration",
    callback=_duration,
    metavar="DURATION",
    help="The soak's length (90, 90s, 5m), instead of the profile's (local only).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where summary.json, metrics.json and the processes' logs go, or the helm "
    "substrate's files [default: ./scaletest-PROFILE].",
)
def scaletest(
    profile_name: str, substrate: str, duration: float | None, output: Path | None
) -> None:
    """Install a profile's fleet and load, wait for steady state, soak (churn and the
    profile's kills), judge its gates, tear down. Exit 0 when every gate holds.

    With --substrate helm nothing runs: the profile's topology is written as Helm values
    and manifests, with the commands that install them on real clusters."""
    from rich.console import Console

    from bigfleet.controlplane import BinariesMissing
    from bigfleet.scaletest.runner import run

    try:
        profile = profiles.load(profile_name)
    except profiles.ProfileError as err:
        raise click.BadParameter(str(err), param_hint="--profile") from err
    output = output or Path(f"scaletest-{profile.name}")
    if substrate == "helm":
        if duration is not None:
            raise click.BadParameter(
                "the helm substrate only writes files and runs no soak", param_hint="--duration"
            )
        _render_helm(profile, output)
        return
    console = Console(stderr=True)
    try:
        if console.is_terminal:
            with console.status(f"{profile.name}: starting") as status:
                outcome = run(
                    profile,
                    output,
                    soak_s=duration,
                    report=lambda line: status.update(f"{profile.name}: {line}"),
                )
        else:  # a log (CI, a file): one timestamped line per report, not a spinner
            outcome = run(profile, output, soak_s=duration, report=_log_line(console, profile.name))
    except BinariesMissing as err:
        raise click.ClickException(str(err)) from err
    summary = outcome.summary
    for gate in summary["gates"]:
        mark = "[green]pass[/]" if gate["passed"] else "[red]FAIL[/]"
        console.print(f"{mark} {gate['name']} = {gate['value']} ({gate['op']} {gate['threshold']})")
    for record in summary["runnerActions"]:
        held = record["asserted"] and not record["fire_error"]
        console.print(f"{'[green]pass[/]' if held else '[red]FAIL[/]'} {record['action']}")
    if summary["unmeasuredSLOs"]:
        console.print(f"unmeasured: {', '.join(summary['unmeasuredSLOs'])}")
    verdict = "[green]PASSED[/]" if outcome.passed else f"[red]FAILED[/]: {summary['failure']}"
    console.print(f"{profile.name} {verdict}; summary in {outcome.summary_path}")
    if not outcome.passed:
        raise SystemExit(1)


def _log_line(console: Console, name: str) -> Callable[[str], None]:
    began = time.monotonic()

    def say(line: str) -> None:
        console.print(f"[{time.monotonic() - began:6.0f}s] {name}: {line}", highlight=False)

    return say


def _render_helm(profile: profiles.Profile, output: Path) -> None:
    from bigfleet.scaletest.helm_values import INSTALL, render

    rendered = render(profile, output)
    for path in rendered.files:
        click.echo(f"wrote {path}")
    click.echo(
        f"\nInstall in this order, from {output} (or: CHARTS=path/to/charts sh {output / INSTALL}):"
    )
    for command in rendered.commands:
        click.echo(f"  {command}")
