"""The whole chain on local control planes, every component a real process.

Per cluster a control plane with controller-manager (garbage collection,
CSR approval and signing), scheduler and kwok, the RBAC a cluster admin
grants BigFleet's join tokens, a `bigfleet operator` and a `bigfleet
pod-controller`; once for the fleet `bigfleet provider fake --join-nodes`,
`bigfleet shard` and, optionally, `bigfleet coordinator --store embedded` (or
several replicas on a three-member etcd).
An unschedulable Pod travels the real path: pod controller ->
CapacityRequest -> operator roll-up -> shard -> provider Create/Configure ->
the fake boots the machine into a Node with the operator's join blob ->
kube-scheduler binds. The cluster tier's chain tests and `bigfleet bench
chain` share it; components can be killed and restarted one by one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from bigfleet.controlplane.cluster import LocalControlPlane
from bigfleet.controlplane.etcd_cluster import EtcdCluster
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok
from bigfleet.controlplane.proxy import LoopbackProxy
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


def pod_spec(cpu: str, priority_class: str = "") -> dict[str, object]:
    """A pod that only asks for CPU; kwok "runs" it, so the image is never pulled."""
    spec: dict[str, object] = {
        "containers": [{"name": "app", "image": "pause", "resources": {"requests": {"cpu": cpu}}}],
        "terminationGracePeriodSeconds": 0,
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return spec


def pod_manifest(name: str, cpu: str, priority_class: str = "") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": pod_spec(cpu, priority_class),
    }


def _bigfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "bigfleet.cli", "--log-level", "warning", *args]


class Chain:
    """Start with `start()`, stop with `stop()`; `kill`/`start_component` by name:
    provider, coordinator (coordinator-<i> with several replicas), shard,
    operator-<cluster>, pod-controller-<cluster>."""

    def __init__(
        self,
        work_dir: Path,
        fleet_config: dict[str, object],
        clusters: Sequence[str] = ("chain",),
        shard_args: Sequence[str] = (),
        rollup_interval_s: float = 0.5,
        pod_controller_mode: str = "unschedulable-only",
        coordinator: bool = False,
        mtls: bool = False,
        coordinator_replicas: int = 1,
        partitionable: bool = False,
    ) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        # With mtls every gRPC edge is mutual TLS, each process with its own identity.
        self.certs = work_dir / "certs" if mtls else None
        if self.certs:
            cluster_flags = [arg for c in clusters for arg in ("--cluster", c)]
            subprocess.run(
                _bigfleet("certs", "init", str(self.certs), *cluster_flags, "--shard", "shard-0"),
                check=True,
                capture_output=True,
            )
        self.control_planes = {
            c: LocalControlPlane(work_dir / f"control-plane-{c}") for c in clusters
        }
        self.probes: dict[str, str] = {}
        self.processes: dict[str, ManagedProcess] = {}
        fleet_file = work_dir / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(fleet_config))
        provider, shard = free_port(), free_port()
        self.shard_address = f"127.0.0.1:{shard}"
        self.provider_address = f"127.0.0.1:{provider}"
        # With partitionable, the shard reaches the provider and the coordinator replicas
        # through loopback proxies that `cut` can partition.
        self.proxies: dict[str, LoopbackProxy] = {}

        def shard_side(name: str, address: str) -> str:
            if not partitionable:
                return address
            self.proxies[name] = LoopbackProxy(address)
            return self.proxies[name].address

        self._add(
            "provider",
            "provider", "fake", "--listen", f"127.0.0.1:{provider}",
            "--config", str(fleet_file), "--join-nodes", *self._tls("provider"),
        )  # fmt: skip
        reporting: list[str] = []
        # One replica on the embedded store, or several on a three-member etcd.
        self.etcd = EtcdCluster(work_dir / "etcd") if coordinator_replicas > 1 else None
        if coordinator:
            endpoints = self.etcd.allocate() if self.etcd else ""
            addresses = []
            for i in range(coordinator_replicas):
                name = "coordinator" if self.etcd is None else f"coordinator-{i}"
                grpc_port, metrics = free_port(), free_port()
                addresses.append(f"127.0.0.1:{grpc_port}")
                store = (
                    ["--store", "etcd", "--etcd", endpoints, "--id", name]
                    if endpoints
                    else ["--store", "embedded", "--data-dir", str(work_dir / "coordinator")]
                )
                self._add(
                    name,
                    "coordinator", *store, "--listen", addresses[-1],
                    "--metrics-port", str(metrics), *self._tls("admin"),
                    probe=f"http://127.0.0.1:{metrics}/healthz",
                )  # fmt: skip
            self.coordinator_address = ",".join(addresses)
            via = [shard_side(f"coordinator-link-{i}", a) for i, a in enumerate(addresses)]
            reporting = [
                "--coordinator-addr", ",".join(via),
                "--coordinator-heartbeat-interval", "1",
            ]  # fmt: skip
        metrics = free_port()
        self._add(
            "shard",
            "shard", "--id", "shard-0", "--listen", self.shard_address,
            "--provider", f"fake={shard_side('provider-link', self.provider_address)}",
            "--metrics-port", str(metrics),
            "--data-dir", str(work_dir / "shard"), *reporting, *shard_args,
            *self._tls("shard/shard-0"),
            probe=f"http://127.0.0.1:{metrics}/healthz",
        )  # fmt: skip
        for cluster, cp in self.control_planes.items():
            kubeconfig = str(cp.kubeconfig_path)
            om, pm = free_port(), free_port()
            self._add(
                f"operator-{cluster}",
                "operator", "--cluster-id", cluster, "--shard", self.shard_address,
                "--kubeconfig", kubeconfig, "--rollup-interval", str(rollup_interval_s),
                "--metrics-port", str(om), *self._tls(f"cluster/{cluster}"),
                probe=f"http://127.0.0.1:{om}/metrics",
            )  # fmt: skip
            self._add(
                f"pod-controller-{cluster}",
                "pod-controller", "--kubeconfig", kubeconfig, "--mode", pod_controller_mode,
                "--metrics-port", str(pm),
                probe=f"http://127.0.0.1:{pm}/metrics",
            )  # fmt: skip

    def _tls(self, identity: str) -> list[str]:
        """The TLS flags for the certificate `bigfleet certs init` wrote for `identity`."""
        if self.certs is None:
            return []
        folder = self.certs / identity
        return [
            "--tls-cert", str(folder / "tls.crt"), "--tls-key", str(folder / "tls.key"),
            "--tls-ca", str(folder / "ca.crt"),
        ]  # fmt: skip

    def _add(self, name: str, *args: str, probe: str = "") -> None:
        self.processes[name] = ManagedProcess(name, _bigfleet(*args), self.work_dir / f"{name}.log")
        if probe:
            self.probes[name] = probe

    def metrics_urls(self) -> dict[str, str]:
        """Every bigfleet process's /metrics, by component name (each probe is served
        by the process's metrics listener)."""
        return {name: probe.rsplit("/", 1)[0] + "/metrics" for name, probe in self.probes.items()}

    @property
    def control_plane(self) -> LocalControlPlane:
        """The first cluster's control plane."""
        return next(iter(self.control_planes.values()))

    def start(self) -> None:
        try:
            for proxy in self.proxies.values():
                proxy.start()
            if self.etcd is not None:
                self.etcd.start()
            for cp in self.control_planes.values():
                cp.start()
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
        if name in self.probes:
            url = self.probes[name]
            process.wait_ready(lambda: http_ok(url), _READY_S)

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def cut(self, link: str, cut: bool = True) -> None:
        """Partition the shard from `link` (provider or coordinator: every replica), or
        heal the partition."""
        proxies = [p for name, p in self.proxies.items() if name.startswith(f"{link}-link")]
        if not proxies:
            raise ValueError(f"no partitionable link to {link!r} (proxied: {sorted(self.proxies)})")
        for proxy in proxies:
            if cut:
                proxy.cut()
            else:
                proxy.heal()

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.stop()
        if self.etcd is not None:
            self.etcd.stop()
        for proxy in self.proxies.values():
            proxy.stop()
        for cp in self.control_planes.values():
            cp.delete()
