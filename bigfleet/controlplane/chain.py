"""The whole chain on the local control plane, every component a real process.

A control plane with controller-manager (garbage collection, CSR approval
and signing), scheduler and kwok; the RBAC a cluster admin grants BigFleet's
join tokens; then `bigfleet provider fake --join-nodes`, `bigfleet shard`,
`bigfleet operator` and `bigfleet pod-controller` as child processes. An
unschedulable Pod travels the real path: pod controller -> CapacityRequest
-> operator roll-up -> shard -> provider Create/Configure -> the fake boots
the machine into a Node with the operator's join blob -> kube-scheduler binds.
The cluster tier's chain tests and `bigfleet bench chain` share it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from bigfleet.controlplane.cluster import LocalControlPlane
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok
from bigfleet.crd import crd_dir

# What kubeadm grants its join tokens, granted here to the group BigFleet's tokens
# carry: ask for a kubelet client certificate, and have it approved automatically.
BOOTSTRAP_GROUP = "system:bootstrappers:bigfleet"
_BINDINGS = {
    "bigfleet-node-bootstrapper": "system:node-bootstrapper",
    "bigfleet-node-autoapprove": "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
}
_READY_S = 60.0


def bootstrap_rbac() -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": BOOTSTRAP_GROUP}
            ],
        }
        for name, role in _BINDINGS.items()
    ]


def _bigfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "bigfleet.cli", "--log-level", "warning", *args]


class Chain:
    """Start with `start()`, stop with `stop()`; components can be killed and restarted."""

    def __init__(
        self,
        work_dir: Path,
        fleet_config: dict[str, object],
        cluster_id: str = "chain",
        shard_args: Sequence[str] = (),
        rollup_interval_s: float = 0.5,
    ) -> None:
        self.work_dir = work_dir
        self.cluster_id = cluster_id
        self.control_plane = LocalControlPlane(work_dir / "control-plane")
        self.ports = {name: free_port() for name in ("provider", "shard", "sm", "om", "pm")}
        fleet_file = work_dir / "fleet.yaml"
        work_dir.mkdir(parents=True, exist_ok=True)
        fleet_file.write_text(yaml.safe_dump(fleet_config))
        kubeconfig = str(self.control_plane.kubeconfig_path)
        self.processes = {
            "provider": ManagedProcess(
                "provider",
                _bigfleet(
                    "provider", "fake", "--listen", f"127.0.0.1:{self.ports['provider']}",
                    "--config", str(fleet_file), "--join-nodes",
                ),
                work_dir / "provider.log",
            ),
            "shard": ManagedProcess(
                "shard",
                _bigfleet(
                    "shard", "--id", "shard-0", "--listen", f"127.0.0.1:{self.ports['shard']}",
                    "--provider", f"fake=127.0.0.1:{self.ports['provider']}",
                    "--metrics-port", str(self.ports["sm"]), "--data-dir", str(work_dir / "shard"),
                    *shard_args,
                ),
                work_dir / "shard.log",
            ),
            "operator": ManagedProcess(
                "operator",
                _bigfleet(
                    "operator", "--cluster-id", cluster_id,
                    "--shard", f"127.0.0.1:{self.ports['shard']}", "--kubeconfig", kubeconfig,
                    "--rollup-interval", str(rollup_interval_s),
                    "--metrics-port", str(self.ports["om"]),
                ),
                work_dir / "operator.log",
            ),
            "pod-controller": ManagedProcess(
                "pod-controller",
                _bigfleet(
                    "pod-controller", "--kubeconfig", kubeconfig,
                    "--metrics-port", str(self.ports["pm"]),
                ),
                work_dir / "pod-controller.log",
            ),
        }  # fmt: skip

    def start(self) -> None:
        cp = self.control_plane
        cp.start()
        try:
            cp.apply_crds(crd_dir())
            cp.start_controller_manager()
            cp.start_scheduler()
            cp.start_kwok()
            cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bootstrap_rbac()))
            for name in self.processes:
                self.start_component(name)
        except BaseException:
            self.stop()
            raise

    def start_component(self, name: str) -> None:
        process = self.processes[name]
        process.start()
        probes = {
            "shard": f"http://127.0.0.1:{self.ports['sm']}/healthz",
            "operator": f"http://127.0.0.1:{self.ports['om']}/metrics",
            "pod-controller": f"http://127.0.0.1:{self.ports['pm']}/metrics",
        }
        if name in probes:
            url = probes[name]
            process.wait_ready(lambda: http_ok(url), _READY_S)

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.stop()
        self.control_plane.delete()
