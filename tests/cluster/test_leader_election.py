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

import kr8s.asyncio
import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.controlplane.process import free_port, http_ok
from bigfleet.crd import CapacityRequest
from tests.cluster.test_chain import request
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
        self,
        kind: str,
        name: str,
        control_plane: LocalControlPlane,
        tmp_path: Path,
        extra: tuple[str, ...] = (),
    ) -> None:
        args, self.lease, self.gauge = KINDS[kind]
        args = [*args, *extra]
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

        assert a.stop() == 0
        # A clean stop released the lease: it no longer names a (a killed a would still
        # hold it until it expired), so b need not wait it out.
        assert not _holder(control_plane, a.lease).startswith(f"{kind}-a_")
        await until(lambda: b.leads() is True, "b leads after a stopped", 3 * LEASE_S)
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


async def test_a_killed_leaders_standby_acknowledges_every_request_once(
    control_plane: LocalControlPlane, tmp_path: Path, api: kr8s.asyncio.Api, namespace: str
) -> None:
    """With a real shard (all-in-one): requests acknowledged by the leader keep their
    acknowledgement when it dies; the standby acknowledges only what came after."""
    shard_port, shard_metrics = free_port(), free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "bigfleet.cli", "all-in-one",
         "--shard-listen", f"127.0.0.1:{shard_port}",
         "--coordinator-listen", f"127.0.0.1:{free_port()}",
         "--provider-listen", f"127.0.0.1:{free_port()}",
         "--shard-metrics-port", str(shard_metrics), "--coordinator-metrics-port", "0",
         "--data-dir", str(tmp_path / "backend"), "--cycle-interval", "0.5"],
        stdout=(tmp_path / "backend.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    extra = ("--cluster-id", "ha-acks", "--shard", f"127.0.0.1:{shard_port}",
             "--rollup-interval", "0.5")  # fmt: skip
    a = Replica("operator", "acks-a", control_plane, tmp_path, extra)
    b = Replica("operator", "acks-b", control_plane, tmp_path, extra)
    a.lease = b.lease = "bigfleet-operator-ha-acks"

    async def acknowledged() -> dict[str, str]:
        found = {}
        async for cr in api.async_get(CapacityRequest, namespace=namespace):
            status = cr.raw.get("status") or {}
            if status.get("phase") == "Acknowledged":
                found[cr.name] = status["acknowledgedAt"]
        return found

    try:
        await until(lambda: http_ok(f"http://127.0.0.1:{shard_metrics}/metrics"), "the shard")
        a.start()
        await until(lambda: a.leads() is True, "a leads", 60)
        b.start()
        await until(lambda: b.leads() is False, "b stands by", 60)
        for i in range(10):
            await CapacityRequest(request(f"before-{i}", namespace, {"cpu": "1"}), api=api).create()
        first: dict[str, str] = {}

        async def ten() -> bool:
            first.update(await acknowledged())
            return len(first) == 10

        await until(ten, "the leader acknowledged all ten", 90)
        a.kill()  # no release: b takes over once the lease runs out
        for i in range(5):
            await CapacityRequest(request(f"after-{i}", namespace, {"cpu": "1"}), api=api).create()
        await until(lambda: b.leads() is True, "b leads", 3 * LEASE_S)
        final: dict[str, str] = {}

        async def fifteen() -> bool:
            final.clear()
            final.update(await acknowledged())
            return len(final) == 15

        await until(fifteen, "the standby acknowledged the new five", 90)
        assert {name: final[name] for name in first} == first  # not acknowledged again
        assert b.stop() == 0
    finally:
        a.kill()
        b.kill()
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=60)
