"""The `bigfleet` command: one binary, a subcommand per component.

The composition root: the only package that may import components, and it
does so inside the command that runs them, so `bigfleet --help` stays fast
and a component's dependencies load only when that component runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bigfleet import __version__, logs
from bigfleet.cli.allinone import all_in_one
from bigfleet.cli.bench import bench
from bigfleet.cli.certs import certs
from bigfleet.cli.conformance import conformance
from bigfleet.cli.coordinator import coordinator
from bigfleet.cli.ctl import ctl
from bigfleet.cli.dev import dev
from bigfleet.cli.explain import explain
from bigfleet.cli.operator import operator
from bigfleet.cli.podcontroller import pod_controller
from bigfleet.cli.provider import provider
from bigfleet.cli.scaletest import scaletest
from bigfleet.cli.shard import shard
from bigfleet.cli.sim import sim
from bigfleet.crd import crd_dir


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bigfleet")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Lowest level of log lines written to stderr.",
)
@click.option(
    "--log-format",
    default="json",
    show_default=True,
    type=click.Choice(logs.FORMATS),
    help="Log lines as JSON objects, or as text for a person (time level logger message "
    "key=value).",
)
def main(log_level: str, log_format: str) -> None:
    """BigFleet: a fleet-level infrastructure autoscaler for many Kubernetes clusters.

    One binary for every component; `bigfleet COMMAND --help` for each.
    """
    logs.configure(log_level, fmt=log_format)


@main.command()
@click.option(
    "--crds",
    "crds_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of CRD manifests to check (default: the ones shipped with bigfleet).",
)
def selfcheck(crds_path: Path | None) -> None:
    """Check offline that this build matches the wire contract and the CRDs.

    Compares every compiled protobuf message, field number, type, enum value
    and RPC with the contract; checks each CRD schema against its typed model;
    decodes the example objects. Exits 1 on any difference.
    """
    from bigfleet import selfcheck as checks

    results = checks.run(crds_path or crd_dir())
    for result in results:
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.summary}")
        for problem in result.problems:
            click.echo(f"     - {problem}")
    passed = sum(r.ok for r in results)
    click.echo(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


main.add_command(provider)
main.add_command(conformance)
main.add_command(sim)
main.add_command(bench)
main.add_command(shard)
main.add_command(coordinator)
main.add_command(ctl)
main.add_command(explain)
main.add_command(certs)
main.add_command(operator)
main.add_command(all_in_one)
main.add_command(pod_controller)
main.add_command(dev)
main.add_command(scaletest)
