"""Where a profile runs. `local`: every process on this machine, no Docker. (The
`helm` substrate runs nothing; scaletest/helm_values.py writes its files.)

Per simulated cluster a local control plane (kube-apiserver, etcd,
kube-scheduler, kube-controller-manager, kwok), its operator and pod
controller (per-pod mode: one CapacityRequest per Pod, so demand is exact);
once for the fleet the fake provider joining nodes, the shard, and with
`coordinator: true` an embedded coordinator, or `coordinatorReplicas`
replicas on a three-member etcd. Built on the chain the cluster
tests use (`bigfleet.controlplane.chain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from bigfleet.controlplane.chain import Chain
from bigfleet.controlplane.process import ProcessFailed, http_ok
from bigfleet.scaletest.profile import Profile
from bigfleet.scaletest.scrape import read
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
            coordinator_replicas=profile.coordinator_replicas,
            partitionable=profile.partitions,
        )
        self.killed: dict[str, str] = {}  # action kind -> the process it killed

    def start(self) -> None:
        self.chain.start()

    def stop(self) -> None:
        self.chain.stop()

    def kubeconfigs(self) -> dict[str, Path]:
        return {c: cp.kubeconfig_path for c, cp in self.chain.control_planes.items()}

    def metrics_urls(self) -> dict[str, str]:
        return self.chain.metrics_urls()

    def component(self, kind: str) -> str:
        """The process an action names: the first cluster's, for per-cluster kinds; the
        replica that leads now, for coordinator-leader."""
        if kind in ("operator", "pod-controller"):
            return f"{kind}-{self.profile.cluster_names[0]}"
        if kind == "coordinator-leader":
            terms = self.coordinator_terms()
            leaders = [name for name, term in terms.items() if term > 0]
            if len(leaders) != 1:
                raise ProcessFailed(f"no single coordinator leader to kill (terms: {terms})")
            return leaders[0]
        return kind

    def coordinator_terms(self) -> dict[str, float]:
        """Each coordinator replica's term: above 0 while it leads, 0 while it follows."""
        urls = {n: u for n, u in self.metrics_urls().items() if n.startswith("coordinator")}
        snapshot = read(urls, timeout_s=2)
        return {
            name: snapshot.total(name, "bigfleet_coordinator_raft_term") or 0.0
            for name in snapshot.samples
        }

    def kill(self, kind: str) -> None:
        self.killed[kind] = self.component(kind)
        self.chain.kill(self.killed[kind])

    def restart(self, kind: str) -> None:
        self.chain.start_component(self.killed.pop(kind))

    def coordinator_addresses(self) -> list[str]:
        return self.chain.coordinator_address.split(",")

    def healthy(self, name: str) -> bool:
        """The process's liveness probe answers 200."""
        return http_ok(self.chain.probes[name])

    def partition(self, links: Sequence[str], cut: bool = True) -> None:
        for link in links:
            self.chain.cut(link, cut)

    async def machines(self) -> dict[str, tuple[int, str]]:
        """Every machine the provider lists: id -> (state, cluster)."""
        async with grpc.aio.insecure_channel(self.chain.provider_address) as channel:
            listing = await provider_pb2_grpc.CapacityProviderStub(channel).List(
                provider_pb2.ListFilter(), timeout=30
            )
        return {m.id: (m.state, m.cluster) for m in listing.machines}
