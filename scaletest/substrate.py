"""Where a profile runs. `local`: every process on this machine, no Docker.

Per simulated cluster a local control plane (kube-apiserver, etcd,
kube-scheduler, kube-controller-manager, kwok), its operator and pod
controller (per-pod mode: one CapacityRequest per Pod, so demand is exact);
once for the fleet the fake provider joining nodes, the shard, and with
`coordinator: true` an embedded coordinator. Built on the chain the cluster
tests use (`bigfleet.controlplane.chain`).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from bigfleet.controlplane.chain import Chain
from bigfleet.scaletest.profile import Profile
from bigfleet.wire import provider_pb2, provider_pb2_grpc


class LocalSubstrate:
    kind = "local"

    def __init__(self, profile: Profile, work_dir: Path) -> None:
        self.profile = profile
        self.chain = Chain(
            work_dir,
            profile.fleet.model_dump(mode="json"),
            clusters=profile.cluster_names,
            shard_args=("--cycle-interval", str(profile.cycle_interval_s)),
            rollup_interval_s=profile.rollup_interval_s,
            pod_controller_mode="per-pod",
            coordinator=profile.coordinator,
        )

    def start(self) -> None:
        self.chain.start()

    def stop(self) -> None:
        self.chain.stop()

    def kubeconfigs(self) -> dict[str, Path]:
        return {c: cp.kubeconfig_path for c, cp in self.chain.control_planes.items()}

    def metrics_urls(self) -> dict[str, str]:
        return self.chain.metrics_urls()

    def component(self, kind: str) -> str:
        """The process an action names: the first cluster's, for per-cluster kinds."""
        if kind in ("operator", "pod-controller"):
            return f"{kind}-{self.profile.cluster_names[0]}"
        return kind

    def kill(self, kind: str) -> None:
        self.chain.kill(self.component(kind))

    def restart(self, kind: str) -> None:
        self.chain.start_component(self.component(kind))

    def log_tail(self, kind: str) -> str:
        return self.chain.processes[self.component(kind)].log_tail()

    async def machines(self) -> dict[str, tuple[int, str]]:
        """Every machine the provider lists: id -> (state, cluster)."""
        async with grpc.aio.insecure_channel(self.chain.provider_address) as channel:
            listing = await provider_pb2_grpc.CapacityProviderStub(channel).List(
                provider_pb2.ListFilter(), timeout=30
            )
        return {m.id: (m.state, m.cluster) for m in listing.machines}
