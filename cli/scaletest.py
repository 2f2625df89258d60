"""`bigfleet scaletest`: a fleet-shaped run with steady-state gates and failover actions."""

from __future__ import annotations

from pathlib import Path

import click

from bigfleet.scaletest import profile as profiles


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
    type=click.Choice(["local"]),
    default="local",
    show_default=True,
    help="Where to run: local starts every process on this machine (no Docker).",
)
@click.option(
    "--duration",
    callback=_duration,
    metavar="DURATION",
    help="The soak's length (90, 90s, 5m), instead of the profile's.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where summary.json, metrics.json and the processes' logs go "
    "[default: ./scaletest-PROFILE].",
)
def scaletest(
    profile_name: str, substrate: str, duration: float | None, output: Path | None
) -> None:
    """Install a profile's fleet and load, wait for steady state, soak (churn and the
    profile's kills), judge its gates, tear down. Exit 0 when every gate holds."""
    from rich.console import Console

    from bigfleet.controlplane import BinariesMissing
    from bigfleet.scaletest.runner import run

    try:
        profile = profiles.load(profile_name)
    except profiles.ProfileError as err:
        raise click.BadParameter(str(err), param_hint="--profile") from err
    output = output or Path(f"scaletest-{profile.name}")
    console = Console(stderr=True)
    try:
        with console.status(f"{profile.name}: starting") as status:
            outcome = run(
                profile,
                output,
                soak_s=duration,
                report=lambda line: status.update(f"{profile.name}: {line}"),
            )
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
