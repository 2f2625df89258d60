"""One control-plane process: logged to a file, probed until ready, stopped politely."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

_STOP_GRACE_S = 10.0
_PROBE_INTERVAL_S = 0.2


def _dying_with_parent(argv: list[str]) -> list[str]:
    """Linux: `argv` run so that the kernel SIGTERMs it when its parent dies.

    A test run killed outright (a CI timeout, SIGKILL) skips every teardown;
    without this, its etcd and kube-apiserver would outlive it. util-linux's
    setpriv sets the signal and then execs the process, which keeps it. Not a
    preexec_fn: Python run between fork and exec, in a process whose other
    threads are inside gRPC, let gRPC's fork handlers start a poller in the
    child that aborted it before it ran (etcd "exited with -6"). Without
    setpriv the process starts all the same, only without the signal.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether `url` answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_until(probe: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Call `probe` until it returns True, or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(_PROBE_INTERVAL_S)


class ProcessFailed(RuntimeError):
    """A control-plane process exited or never became ready; the message carries its log tail."""


_GIVEN: set[int] = set()
_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _below_ephemeral() -> range:
    """Ports under the kernel's range for outgoing connections, which can then never
    hold them; empty when that range is unknown or starts too low."""
    try:
        low = int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(20000, low) if low > 21000 else range(0)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, that this process has
    not handed out before (a just-released port may be offered again), and, where the
    kernel says which, outside the ports outgoing connections take."""
    candidates = _below_ephemeral()
    while True:
        wanted = random.choice(candidates) if candidates else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", wanted))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def _child_env() -> dict[str, str]:
    """This process's environment without KUBECONFIG: a component that should talk to an
    API server is given --kubeconfig; one inherited from an in-process operator (kopf reads
    it from the environment) would make, say, a shard publish into the wrong cluster."""
    return {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}


class ManagedProcess:
    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # A session of its own, so a Ctrl-C aimed at pytest does not kill it mid-teardown.
            self._proc = subprocess.Popen(
                _dying_with_parent(self.argv),
                env=_child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> None:
        """Call `probe` until it returns True; fail fast if the process exits meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ProcessFailed(
                    f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if probe():
                return
            time.sleep(_PROBE_INTERVAL_S)
        raise ProcessFailed(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as when its node dies."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def terminate(self, timeout_s: float) -> int:
        """SIGTERM, as the kubelet sends, and the exit code; TimeoutExpired if it hangs."""
        if self._proc is None:
            raise ProcessFailed(f"{self.name} was never started")
        self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
