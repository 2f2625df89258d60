"""SIGTERM (the kubelet) or SIGINT (Ctrl-C) ends every long-running process with 0.

kopf replaces the process's SIGINT/SIGTERM handlers once it runs, so without care a
signal stopped only kopf's watcher and the rest kept going until SIGKILL. Processes
that run no kopf (a shard without a kubeconfig, the embedded coordinator) must stop
the same way. The fake provider and an etcd-backed coordinator leader are covered
by the component tier.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bigfleet.controlplane import LocalControlPlane
from bigfleet.controlplane.process import free_port, http_ok
from tests.support.processes import bigfleet, stop
from tests.support.waiting import until


def _command(kind: str, kubeconfig: Path, data: Path) -> tuple[list[str], int]:
    metrics = free_port()
    common = ["--kubeconfig", str(kubeconfig), "--metrics-port", str(metrics)]
    if kind.startswith("operator"):
        args = ["operator", "--cluster-id", "shutdown", "--shard", f"127.0.0.1:{free_port()}"]
        if kind == "operator-env":  # no flag: $KUBECONFIG, as kubectl finds it
            common = common[2:]
    elif kind.startswith("shard"):
        shard_id = "shard-in-cluster" if kind == "shard-in-cluster" else "shard-shutdown"
        args = ["shard", "--id", shard_id, "--listen", f"127.0.0.1:{free_port()}",
                "--provider", f"none=127.0.0.1:{free_port()}", "--data-dir", str(data)]  # fmt: skip
        if kind == "shard-alone":  # no Shard resource to publish: nothing of Kubernetes runs
            common = common[2:]
        elif kind == "shard-in-cluster":  # found as kubectl would ($KUBECONFIG here)
            common = ["--in-cluster", *common[2:]]
    elif kind == "coordinator-embedded":
        args = ["coordinator", "--store", "embedded", "--data-dir", str(data),
                "--listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
        common = common[2:]
    else:
        args = ["pod-controller"]
    return [*args, *common], metrics


KINDS = [
    "operator",
    "operator-env",
    "shard",
    "shard-alone",
    "shard-in-cluster",
    "pod-controller",
    "coordinator-embedded",
]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_signal_ends_the_process_cleanly(
    control_plane: LocalControlPlane, tmp_path: Path, kind: str, sig: signal.Signals
) -> None:
    args, metrics = _command(kind, control_plane.kubeconfig_path, tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    if kind in ("operator-env", "shard-in-cluster"):  # they find the API server themselves
        env["KUBECONFIG"] = str(control_plane.kubeconfig_path)
    with bigfleet(args, tmp_path / "log", env) as process:
        await until(lambda: http_ok(f"http://127.0.0.1:{metrics}/metrics"), f"{kind} serving")
        if kind == "shard-in-cluster":  # its Shard resource, published with no --kubeconfig

            def published() -> bool:
                got = control_plane.kubectl("get", "shards", "shard-in-cluster", check=False)
                return got.returncode == 0

            await until(published, "the shard's resource")
        code = stop(process, sig)  # the process must end on its own
    assert code == 0, (tmp_path / "log").read_text()[-3000:]
