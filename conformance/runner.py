"""Run the suite against one target and report a line per check."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from bigfleet.conformance.checks import CHECKS, run_check
from bigfleet.conformance.process import ProviderProcess
from bigfleet.conformance.target import CheckSkipped, Target
from bigfleet.tls import Credentials


@dataclass(frozen=True)
class Verdict:
    check_id: str
    summary: str
    failure: str | None
    skipped: str | None = None  # why the check could not run; neither a pass nor a failure

    @property
    def passed(self) -> bool:
        """Nothing failed: the check held, or it was skipped. Reports count skips apart."""
        return self.failure is None

    @property
    def held(self) -> bool:
        """The check ran and held."""
        return self.failure is None and self.skipped is None

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else "FAIL" if self.failure else "PASS"

    def line(self) -> str:
        text = f"{self.status} {self.check_id}: {self.summary}"
        why = self.skipped or self.failure
        return f"{text}\n     {why}" if why else text


async def run_suite(
    address: str,
    *,
    only: str = "*",
    rpc_timeout_s: float = 30.0,
    report: Callable[[Verdict], None] = lambda v: None,
    credentials: Credentials | None = None,
    provider_command: str | None = None,
    ready_timeout_s: float = 30.0,
) -> list[Verdict]:
    """Every check whose id matches `only` (a glob), in registration order.

    With `credentials` the suite dials mutual TLS and presents their certificate.
    With `provider_command` the suite starts the provider itself (it must serve at
    `address`), may restart it (the durability checks), and stops it at the end,
    whatever happens; without it the durability checks are skipped.
    """
    target, channel = Target.dial(address, rpc_timeout_s, credentials)
    process = None
    if provider_command is not None:
        process = ProviderProcess(
            provider_command, lambda: target.list(max_results=1), ready_timeout_s
        )
        target.restart = process.restart
    verdicts = []
    try:
        if process is not None:
            await process.start()
        for c in CHECKS:
            if not fnmatch.fnmatch(c.id, only):
                continue
            try:
                verdict = Verdict(c.id, c.summary, await run_check(target, c))
            except CheckSkipped as skip:
                verdict = Verdict(c.id, c.summary, None, skipped=str(skip))
            report(verdict)
            verdicts.append(verdict)
    finally:
        if process is not None:
            await process.stop()
            process.close()
        await channel.close()
    return verdicts
