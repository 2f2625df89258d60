"""What a check is, and how modules register theirs (each category's module keeps a list)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from bigfleet.conformance.target import CheckFailed, Target

CheckFn = Callable[[Target], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    category: str
    name: str
    summary: str
    run: CheckFn

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"


def registrar(into: list[Check]) -> Callable[[str, str, str], Callable[[CheckFn], CheckFn]]:
    """A `@check(category, name, summary)` decorator that appends to `into`, in order."""

    def check(category: str, name: str, summary: str) -> Callable[[CheckFn], CheckFn]:
        def register(fn: CheckFn) -> CheckFn:
            into.append(Check(category, name, summary, fn))
            return fn

        return register

    return check


async def run_check(t: Target, c: Check) -> str | None:
    """None when the check holds, else why not. CheckSkipped passes through to the runner."""
    try:
        await c.run(t)
    except CheckFailed as err:
        return str(err)
    except grpc.aio.AioRpcError as err:
        return f"unexpected {err.code().name}: {err.details()}"
    return None
