"""Run the suite against one target and report a line per check."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from bigfleet.conformance.checks import CHECKS, run_check
from bigfleet.conformance.target import Target
from bigfleet.tls import Credentials


@dataclass(frozen=True)
class Verdict:
    check_id: str
    summary: str
    failure: str | None

    @property
    def passed(self) -> bool:
        return self.failure is None

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        text = f"{status} {self.check_id}: {self.summary}"
        return text if self.passed else f"{text}\n     {self.failure}"


async def run_suite(
    address: str,
    *,
    only: str = "*",
    rpc_timeout_s: float = 30.0,
    report: Callable[[Verdict], None] = lambda v: None,
    credentials: Credentials | None = None,
) -> list[Verdict]:
    """Every check whose id matches `only` (a glob), in registration order.

    With `credentials` the suite dials mutual TLS and presents their certificate.
    """
    target, channel = Target.dial(address, rpc_timeout_s, credentials)
    verdicts = []
    try:
        for c in CHECKS:
            if not fnmatch.fnmatch(c.id, only):
                continue
            verdict = Verdict(c.id, c.summary, await run_check(target, c))
            report(verdict)
            verdicts.append(verdict)
    finally:
        await channel.close()
    return verdicts
