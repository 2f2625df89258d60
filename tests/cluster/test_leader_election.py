"""Two replicas on one Lease (operator, pod controller): one works, the other stands by
and takes over, at once when the leader stops cleanly, after the lease runs out when it
is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.controlplane.process import free_port
from tests.support.waiting import until

LEASE_S = 15  # the lock's default lease duration


# What each kind runs, its Lease and its leader gauge.
KINDS = {
    "operator": (
        ["operator", "--cluster-id", "ha", "--shard", f"127.0.0.1:{free_port()}"],
        "bigfleet-operator-ha",
        "bigfleet_operator_leader",
    ),
    "pod-controller": (
        ["pod-controller"],
        "bigfleet-pod-controller",
        "bigfleet_pod_controller_leader",
    ),
}


class Replica:
    def __init__(
        self, kind: str, name: str, control_plane: LocalControlPlane, tmp_path: Path
    ) -> None:
        args, self.lease, self.gauge = KINDS[kind]
        self.name, self.metrics = name, free_port()
        self.log_path = tmp_path / f"{name}.log"
        self.argv = [sys.executable, "-m", "bigfleet.cli", *args,
                     "--metrics-port", str(self.metrics),
                     "--leader-elect", "--leader-election-namespace", "default"]  # fmt: skip
        self.env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path),
                    "POD_NAME": name}  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    def leads(self) -> bool | None:
        """True/False from its leader gauge; None while it does not answer."""
        try:
            url = f"http://127.0.0.1:{self.metrics}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        return f"{self.gauge} 1.0" in text

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _holder(control_plane: LocalControlPlane, lease: str) -> str:
    out = control_plane.kubectl(
        "get", "lease", lease, "-n", "default",
        "-o", "jsonpath={.spec.holderIdentity}", check=False,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_one_replica_leads_and_a_standby_takes_over(
    control_plane: LocalControlPlane, tmp_path: Path, kind: str
) -> None:
    a = Replica(kind, f"{kind}-a", control_plane, tmp_path)
    b = Replica(kind, f"{kind}-b", control_plane, tmp_path)
    try:
        a.start()
        await until(lambda: a.leads() is True, "a leads", 60)
        b.start()
        await until(lambda: b.leads() is False, "b stands by, answering its probes", 60)
        assert _holder(control_plane, a.lease).startswith(f"{kind}-a_")

        assert a.stop() == 0  # a clean stop releases the lease...
        # ...so b leads well inside the lease duration it would otherwise wait out.
        await until(lambda: b.leads() is True, "b leads after a stopped", LEASE_S - 5)
        assert _holder(control_plane, a.lease).startswith(f"{kind}-b_")

        a.start()  # back, as a standby
        await until(lambda: a.leads() is False, "a stands by", 60)
        b.kill()  # no release: a waits the lease out, then leads
        await until(lambda: a.leads() is True, "a leads after b was killed", 3 * LEASE_S)
        assert _holder(control_plane, a.lease).startswith(f"{kind}-a_")
        assert a.stop() == 0
    finally:
        a.kill()
        b.kill()
    logs = a.log_path.read_text() + b.log_path.read_text()
    assert "Traceback" not in logs, logs[-3000:]
