"""The helm substrate: a profile's topology written as Helm values and manifests for
real clusters, with the commands that install them. Nothing is started or judged.

The local substrate's topology, chart by chart: the `bigfleet` chart on the
management cluster runs the shard (one, at the profile's cycle interval), the
coordinator (none, the embedded store, or `coordinatorReplicas` replicas on the
bundled three-member etcd) and the fake provider with the profile's fleet,
joining its machines as kwok Nodes. Every simulated cluster becomes a real
cluster with its own `bigfleet-operator` release (the cluster's name, the
roll-up interval, the shard's address), a pod controller in per-pod mode, and
the load: the very manifests `Load.install` creates (scaletest/load.py).

What a profile says about running it (steady state, soak, churn, actions,
gates) has no counterpart here: nothing measures a real cluster yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bigfleet.scaletest.load import manifests
from bigfleet.scaletest.profile import Profile

NAMESPACE = "bigfleet-system"
FLEET_RELEASE = "fleet"
OPERATOR_RELEASE = "bigfleet-operator"
POD_CONTROLLER_RELEASE = "bigfleet-pod-controller"
MANAGEMENT_CONTEXT = "management"
# The bigfleet chart's names for release FLEET_RELEASE: shard pod 0 of its
# StatefulSet, through the headless Service of the same name, on the default port.
SHARD_NAME = f"{FLEET_RELEASE}-bigfleet-shard"
SHARD_ADDRESS = f"{SHARD_NAME}-0.{SHARD_NAME}.{NAMESPACE}.svc:7780"
# The local substrate's shard reports to its coordinator every second.
HEARTBEAT_INTERVAL_S = 1
# The bundled etcd the local substrate also runs under several coordinator replicas.
ETCD_MEMBERS = 3

FLEET_VALUES = "bigfleet-values.yaml"
POD_CONTROLLER_VALUES = "pod-controller-values.yaml"
LOAD = "load.yaml"
INSTALL = "install.sh"
README = "README.txt"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """The files written (in the order they were written) and the install commands, in
    the order they must run."""

    files: tuple[Path, ...]
    commands: tuple[str, ...]


def operator_values_file(cluster: str) -> str:
    return f"operator-{cluster}-values.yaml"


def context_variable(cluster: str) -> str:
    """The environment variable naming a cluster's kube context in the install script."""
    return cluster.upper()


def fleet_values(profile: Profile) -> dict[str, Any]:
    """Values for the `bigfleet` chart."""
    values: dict[str, Any] = {
        "shard": {
            "replicas": 1,
            "cycleIntervalSeconds": profile.cycle_interval_s,
        },
        "fakeProvider": {
            "enabled": True,
            "idle": 0,
            "speculative": 0,
            "fleet": profile.fleet.model_dump(mode="json"),
            "joinNodes": True,
        },
    }
    if not profile.coordinator:
        values["coordinator"] = {"enabled": False}
    elif profile.coordinator_replicas == 1:
        values["coordinator"] = {"store": "embedded"}
    else:
        values["coordinator"] = {"store": "etcd", "replicas": profile.coordinator_replicas}
        values["etcd"] = {"replicas": ETCD_MEMBERS}
    if profile.coordinator:
        values["shard"]["coordinatorHeartbeatIntervalSeconds"] = HEARTBEAT_INTERVAL_S
    return values


def operator_values(profile: Profile, cluster: str) -> dict[str, Any]:
    """Values for one simulated cluster's `bigfleet-operator` release."""
    return {
        "clusterID": cluster,
        "shardAddress": SHARD_ADDRESS,
        "rollupIntervalSeconds": profile.rollup_interval_s,
    }


def pod_controller_values() -> dict[str, Any]:
    """Per-pod mode: every Pod gets its CapacityRequest, so demand is exact."""
    return {"mode": "per-pod"}


def install_commands(profile: Profile) -> list[str]:
    """The commands, in order, with the script's variables: CHARTS, MANAGEMENT, one per
    cluster (C1, C2, ...), and "$@" for extra helm flags."""
    commands = [
        f'helm install {FLEET_RELEASE} "$CHARTS/bigfleet" --kube-context "$MANAGEMENT"'
        f' -n {NAMESPACE} --create-namespace -f {FLEET_VALUES} "$@"'
    ]
    for cluster in profile.cluster_names:
        context = f'"${context_variable(cluster)}"'
        commands += [
            f'helm install {OPERATOR_RELEASE} "$CHARTS/bigfleet-operator"'
            f" --kube-context {context} -n {NAMESPACE} --create-namespace"
            f" -f {operator_values_file(cluster)}"
            ' ${SHARD_ADDRESS:+--set "shardAddress=$SHARD_ADDRESS"} "$@"',
            f"helm install {POD_CONTROLLER_RELEASE}"
            f' "$CHARTS/bigfleet-unschedulable-pod-controller" --kube-context {context}'
            f' -n {NAMESPACE} -f {POD_CONTROLLER_VALUES} "$@"',
            f"kubectl --context {context} apply -f {LOAD}",
        ]
    return commands


def _script(profile: Profile) -> str:
    defaults = [f'MANAGEMENT="${{MANAGEMENT:-{MANAGEMENT_CONTEXT}}}"'] + [
        f'{context_variable(c)}="${{{context_variable(c)}:-{c}}}"' for c in profile.cluster_names
    ]
    return "\n".join(
        [
            "#!/bin/sh",
            f"# Installs the {profile.name} profile's topology; see README.txt.",
            "set -eu",
            ': "${CHARTS:?set CHARTS to the charts folder of the BigFleet repository}"',
            'CHARTS=$(cd "$CHARTS" && pwd)',
            *defaults,
            'cd "$(dirname "$0")"',
            *install_commands(profile),
            "",
        ]
    )


def _readme(profile: Profile) -> str:
    clusters = profile.cluster_names
    contexts = ", ".join(f"{context_variable(c)} (default {c})" for c in clusters)
    if not profile.coordinator:
        coordinator = "no coordinator"
    elif profile.coordinator_replicas == 1:
        coordinator = "one coordinator on the embedded store"
    else:
        coordinator = (
            f"{profile.coordinator_replicas} coordinator replicas on a {ETCD_MEMBERS}-member etcd"
        )
    operator_files = ", ".join(operator_values_file(c) for c in clusters)
    lines = [
        f"The {profile.name} scale-test profile as Helm releases for real clusters.",
        "",
        f"{FLEET_VALUES}: the bigfleet chart for the management cluster: one shard",
        f"  (cycle every {profile.cycle_interval_s:g} s), {coordinator}, and the fake",
        f"  provider with the profile's fleet ({_machines(profile)} machines), which boots",
        "  Configured machines into their clusters as kwok Nodes.",
        f"{operator_files}: one bigfleet-operator release per",
        f"  cluster (its cluster id, roll-ups every {profile.rollup_interval_s:g} s, the shard's",
        "  address inside the management cluster).",
        f"{POD_CONTROLLER_VALUES}: the pod controller in every cluster, per-pod mode.",
        f"{LOAD}: the load for every cluster: namespace scaletest, "
        f"{len(profile.workloads)} Deployments,",
        f"  {profile.pods_per_cluster} Pods per cluster.",
        f"{INSTALL}: the installs below, in order.",
        "",
        "Run it from anywhere with CHARTS set to the repository's charts folder:",
        "",
        "  CHARTS=path/to/charts sh install.sh [extra helm flags]",
        "",
        f"Kube contexts: MANAGEMENT (default {MANAGEMENT_CONTEXT}) and {contexts}.",
        "Extra helm flags go to every helm install; no image is published, so pass",
        "  --set image.repository=REGISTRY/bigfleet --set image.tag=TAG",
        "for the image you built from the Dockerfile and pushed.",
        "",
        "Before it runs:",
        "- kwok runs in every cluster (it keeps the joined Nodes Ready and runs their",
        "  Pods; the load's image is never pulled), and no other Node there has room",
        "  for the load.",
        "- When the clusters are not the management cluster, the operators cannot",
        "  reach the shard at its in-cluster address: expose it (the bigfleet chart's",
        "  shard.perPodService) and set SHARD_ADDRESS=HOST:PORT. The fake provider",
        "  joins machines through the API server address in each join blob, so set",
        "  the operator chart's apiServerURL to an address the management cluster",
        "  reaches (--set apiServerURL=...).",
        "",
        "Not rendered: the steady-state wait, the soak, churn, the profile's actions",
        "and its gates. Nothing measures or judges a real cluster yet.",
        "",
        "Commands:",
        "",
        *(f"  {command}" for command in install_commands(profile)),
        "",
    ]
    return "\n".join(lines)


def _machines(profile: Profile) -> int:
    return sum(pool.count for pool in profile.fleet.pools)


class _PlainDumper(yaml.SafeDumper):
    """Writes a mapping used twice (a Deployment's selector and Pod labels) twice, not as
    an anchor and an alias, so the files read like hand-written ones."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _write_yaml(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False))
    return path


def render(profile: Profile, out_dir: Path) -> Rendered:
    """Write the values, the load, the install script and its README under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        _write_yaml(out_dir / FLEET_VALUES, [fleet_values(profile)]),
        *(
            _write_yaml(out_dir / operator_values_file(c), [operator_values(profile, c)])
            for c in profile.cluster_names
        ),
        _write_yaml(out_dir / POD_CONTROLLER_VALUES, [pod_controller_values()]),
        _write_yaml(out_dir / LOAD, manifests(profile)),
    ]
    script = out_dir / INSTALL
    script.write_text(_script(profile))
    script.chmod(0o755)
    readme = out_dir / README
    readme.write_text(_readme(profile))
    return Rendered(files=(*files, script, readme), commands=tuple(install_commands(profile)))
