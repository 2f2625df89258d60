"""Fixtures of the kind tier: the image, the management cluster with the control tier,
and managed clusters with the operator and the pod controller.

Everything is session-scoped: a kind cluster takes a minute or more to create.
Set BIGFLEET_E2E_KEEP=1 to keep the clusters after the run (the next run reuses
them), and BIGFLEET_E2E_NODE_IMAGE to pick kind's node image (the CRDs need
Kubernetes 1.31 or newer). pytest-kind is imported only here, through
`pytest.importorskip`, so the tier skips cleanly where it is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.fleet import (
    CRDS_DIR,
    IMAGE,
    KIND_DIR,
    KWOK_MANIFESTS,
    KWOK_RELEASE,
    MANAGED,
    MANAGEMENT_VALUES,
    NAMESPACE,
    POD_CONTROLLER_VALUES,
    RELEASES,
    ROOT,
    SHARD_NODEPORT,
    SHARD_STATEFULSET,
    Cluster,
    KindLike,
    cluster_name,
    kind_config,
    operator_values,
    run,
)

MakeCluster = Callable[[str], Cluster]


@pytest.fixture(scope="session")
def image() -> str:
    """bigfleet:dev, built from the repository's Dockerfile when the engine lacks it."""
    present = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, check=False
    )
    if present.returncode != 0:
        if not (ROOT / "Dockerfile").is_file():
            pytest.fail(f"no {IMAGE} image and no Dockerfile to build it from", pytrace=False)
        run("docker", "build", "-t", IMAGE, str(ROOT))
    return IMAGE


@pytest.fixture(scope="session")
def kind_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeCluster]:
    """Makes (or reuses) the kind cluster of a kind/ config; deletes them at the end."""
    pytest_kind = pytest.importorskip(
        "pytest_kind", reason="the kind tier needs pytest-kind: pip install -e '.[e2e]'"
    )
    work = tmp_path_factory.mktemp("kind")
    made: list[KindLike] = []

    def make(source: str) -> Cluster:
        name = cluster_name(source)
        kubeconfig = work / f"{name}.kubeconfig"
        if name in run("kind", "get", "clusters").split():  # kept from an earlier run
            run("kind", "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig))
        # pytest-kind keeps a scratch folder in the working directory: not the repository.
        with contextlib.chdir(work):
            kind: KindLike = pytest_kind.KindCluster(
                name,
                kubeconfig=kubeconfig,
                image=os.environ.get("BIGFLEET_E2E_NODE_IMAGE") or None,
                kind_path=Path(str(shutil.which("kind"))),
                kubectl_path=Path(str(shutil.which("kubectl"))),
            )
        made.append(kind)
        kind.create(config_file=kind_config(source, name, work))
        return Cluster(kind)

    yield make
    if os.environ.get("BIGFLEET_E2E_KEEP") != "1":
        for kind in reversed(made):
            kind.delete()


@pytest.fixture(scope="session")
def management(kind_clusters: MakeCluster, image: str) -> Cluster:
    """CRDs, coordinator + etcd + shard + fake provider, shard-0 on NodePort 30780."""
    cluster = kind_clusters("management")
    cluster.kind.load_docker_image(image)
    cluster.kubectl("apply", "-f", str(CRDS_DIR))
    cluster.helm_install(RELEASES["bigfleet"], "bigfleet", MANAGEMENT_VALUES)
    cluster.kubectl("apply", "-f", str(KIND_DIR / "shard-nodeport.yaml"))
    cluster.kubectl(
        "-n", NAMESPACE, "rollout", "status", f"statefulset/{SHARD_STATEFULSET}", "--timeout=5m"
    )
    return cluster


@pytest.fixture(scope="session")
def shard_address(management: Cluster) -> str:
    """Where operators in other kind clusters dial the shard (kind/README.md)."""
    return f"{management.node_address()}:{SHARD_NODEPORT}"


def _managed(make: MakeCluster, image: str, cluster_id: str, shard_address: str) -> Cluster:
    cluster = make(MANAGED[cluster_id])
    cluster.kind.load_docker_image(image)
    for manifest in KWOK_MANIFESTS:
        release = os.environ.get("BIGFLEET_E2E_KWOK_RELEASE") or KWOK_RELEASE
        cluster.kubectl("apply", "-f", f"{release}/{manifest}")
    cluster.kubectl(
        "-n", "kube-system", "rollout", "status", "deployment/kwok-controller", "--timeout=5m"
    )
    cluster.helm_install(
        RELEASES["bigfleet-operator"],
        "bigfleet-operator",
        operator_values(cluster_id, shard_address),
    )
    cluster.helm_install(
        RELEASES["bigfleet-unschedulable-pod-controller"],
        "bigfleet-unschedulable-pod-controller",
        POD_CONTROLLER_VALUES,
    )
    return cluster


@pytest.fixture(scope="session")
def managed_a(kind_clusters: MakeCluster, image: str, shard_address: str) -> Cluster:
    return _managed(kind_clusters, image, "e2e-a", shard_address)


@pytest.fixture(scope="session")
def managed_b(kind_clusters: MakeCluster, image: str, shard_address: str) -> Cluster:
    return _managed(kind_clusters, image, "e2e-b", shard_address)
