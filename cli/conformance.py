"""`bigfleet conformance`: the provider conformance suite against a live endpoint."""

from __future__ import annotations

import asyncio
import shlex
import sys
from typing import TYPE_CHECKING

import click

from bigfleet.cli import options

if TYPE_CHECKING:
    from bigfleet.tls import TLSFiles


def _command(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a command that splits into nothing or does not split (unbalanced quotes)."""
    if value is None:
        return None
    try:
        if shlex.split(value):
            return value
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    raise click.BadParameter("the command is empty")


@click.command()
@click.option("--target", required=True, help="HOST:PORT of the CapacityProvider under test.")
@click.option(
    "--only",
    default="*",
    show_default=True,
    help="Run only checks whose id (category/name) matches this glob.",
)
@click.option(
    "--rpc-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Deadline in seconds of each RPC.",
)
@click.option(
    "--provider-command",
    callback=_command,
    help="Start the provider with this command (split like a shell, serving at --target), "
    "run the durability checks that restart it, and stop it at the end. Without it the "
    "durability checks are skipped.",
)
@click.option("--list", "list_only", is_flag=True, help="List the checks and exit.")
@options.tls
def conformance(
    target: str,
    only: str,
    rpc_timeout: float,
    provider_command: str | None,
    list_only: bool,
    tls: TLSFiles | None,
) -> None:
    """Check a provider against the CapacityProvider contract.

    Black-box: lifecycle, idempotency, error codes, List and revisions, field
    shape, transitions, fencing and metadata. The target needs about 64
    Speculative machines it can create, configure, drain and delete. Prints a
    line per check and `N passed, M failed, K skipped`; exits 1 on any failure
    or when no check passed.

    With --provider-command the suite starts the provider itself, and the
    durability checks restart it (SIGTERM, SIGKILL after 10 s) to see that
    machines, metadata, fence marks, operation ids and the revision survive.

    With --tls-cert, --tls-key and --tls-ca the suite speaks mutual TLS; give
    it a shard certificate (bigfleet://shard/<id>): its fencing tokens then
    carry that shard id, as a provider that binds tokens to callers requires.
    """
    from bigfleet.conformance.checks import CHECKS
    from bigfleet.conformance.runner import run_suite
    from bigfleet.conformance.target import CheckFailed
    from bigfleet.tls import Role, load

    if list_only:
        for c in CHECKS:
            click.echo(f"{c.id}: {c.summary}")
        return
    try:
        credentials = load(tls)
    except (OSError, ValueError) as err:
        raise click.UsageError(f"TLS files: {err}") from err
    if credentials is not None and (
        credentials.identity is None or credentials.identity.role != Role.SHARD
    ):
        click.echo(
            f"warning: {credentials.files.cert} is not a shard certificate "
            f"({credentials.identity or 'no BigFleet identity'}); a provider that binds "
            "fencing tokens to callers will refuse every mutation",
            err=True,
        )
    try:
        verdicts = asyncio.run(
            run_suite(
                target,
                only=only,
                rpc_timeout_s=rpc_timeout,
                report=lambda v: click.echo(v.line()),
                credentials=credentials,
                provider_command=provider_command,
            )
        )
    except CheckFailed as err:  # the provider it was to start never answered
        raise click.ClickException(str(err)) from err
    held = sum(v.held for v in verdicts)
    skipped = sum(bool(v.skipped) for v in verdicts)
    failed = len(verdicts) - held - skipped
    click.echo(f"{held} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed or not held else 0)
