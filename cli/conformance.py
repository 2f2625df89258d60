"""`bigfleet conformance`: the provider conformance suite against a live endpoint."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from bigfleet.cli import options

if TYPE_CHECKING:
    from bigfleet.tls import TLSFiles


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
@click.option("--list", "list_only", is_flag=True, help="List the checks and exit.")
@options.tls
def conformance(
    target: str, only: str, rpc_timeout: float, list_only: bool, tls: TLSFiles | None
) -> None:
    """Check a provider against the CapacityProvider contract.

    Black-box: lifecycle, idempotency, error codes, List and revisions, field
    shape, transitions, fencing and metadata. The target needs about 64
    Speculative machines it can create, configure, drain and delete. Prints a
    line per check and `N passed, M failed`; exits 1 on any failure.

    With --tls-cert, --tls-key and --tls-ca the suite speaks mutual TLS; give
    it a shard certificate (bigfleet://shard/<id>): its fencing tokens then
    carry that shard id, as a provider that binds tokens to callers requires.
    """
    from bigfleet.conformance.checks import CHECKS
    from bigfleet.conformance.runner import run_suite
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
    verdicts = asyncio.run(
        run_suite(
            target,
            only=only,
            rpc_timeout_s=rpc_timeout,
            report=lambda v: click.echo(v.line()),
            credentials=credentials,
        )
    )
    failed = sum(not v.passed for v in verdicts)
    click.echo(f"{len(verdicts) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not verdicts else 0)
