"""A `bigfleet` process a test starts, signals and waits for, never left running."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


@contextlib.contextmanager
def bigfleet(
    args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`bigfleet ARGS` with its output in `log_path`; killed on the way out if still up."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bigfleet.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def stop(
    process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, bound_s: float = 60
) -> int:
    """Send `sig` and return the exit code. The bound only ends a process that never
    stops (TimeoutExpired); it is not a timing goal."""
    process.send_signal(sig)
    return process.wait(timeout=bound_s)
