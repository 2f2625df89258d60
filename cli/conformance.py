"""`bigfleet conformance`: the provider conformance suite against a live endpoint."""

from __future__ import annotations

import asyncio
import sys

import click


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
def conformance(target: str, only: str, rpc_timeout: float, list_only: bool) -> None:
    """Check a provider against the CapacityProvider contract.

    Black-box: lifecycle, idempotency, error codes, List and revisions, field
    shape, transitions, fencing and metadata. The target needs about 64
    Speculative machines it can create, configure, drain and delete. Prints a
    line per check and `N passed, M failed`; exits 1 on any failure.
    """
    from bigfleet.conformance.checks import CHECKS
    from bigfleet.conformance.runner import run_suite

    if list_only:
        for c in CHECKS:
            click.echo(f"{c.id}: {c.summary}")
        return
    verdicts = asyncio.run(
        run_suite(
            target, only=only, rpc_timeout_s=rpc_timeout, report=lambda v: click.echo(v.line())
        )
    )
    failed = sum(not v.passed for v in verdicts)
    click.echo(f"{len(verdicts) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not verdicts else 0)
