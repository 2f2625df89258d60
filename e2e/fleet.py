"""A small fleet on kind: cluster names, chart values, and the reads and writes the tests make.

Nothing here imports pytest-kind; the fixtures in conftest.py hand in its
KindCluster objects, so this module imports (and its constants are checked by
the unit tier) where pytest-kind is not installed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
KIND_DIR = ROOT / "kind"
CHARTS_DIR = ROOT / "charts"
CRDS_DIR = ROOT / "crds"

IMAGE = "bigfleet:dev"
NAMESPACE = "bigfleet-system"
# Cluster id of each managed cluster -> the kind/ config it is made from.
MANAGED = {"e2e-a": "managed-a", "e2e-b": "managed-b"}
SHARD_STATEFULSET = "bigfleet-shard"
SHARD_ID = "shard-0"  # the shard names itself after its StatefulSet ordinal
SHARD_NODEPORT = 30780

# The fake provider's default machines: 8 CPU / 32Gi of this instance type.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
FAKE_INSTANCE_TYPE = "m6i.2xlarge"
FAKE_IDLE_MACHINES = 8

# kwok keeps the Nodes the tests register Ready and runs their pods.
KWOK_RELEASE = "https://github.com/kubernetes-sigs/kwok/releases/download/v0.7.0"
KWOK_MANIFESTS = ("kwok.yaml", "stage-fast.yaml")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"

# Values per chart, as `helm --set` takes them; tests/unit/test_devloop_files.py
# checks every key against the chart's values.yaml.
IMAGE_VALUES = {
    "image.repository": IMAGE.split(":")[0],
    "image.tag": IMAGE.split(":")[1],
    "image.pullPolicy": "IfNotPresent",  # loaded by `kind load`, never pulled
}
MANAGEMENT_VALUES = {
    **IMAGE_VALUES,
    "fakeProvider.enabled": "true",
    "fakeProvider.idle": str(FAKE_IDLE_MACHINES),
}
POD_CONTROLLER_VALUES = dict(IMAGE_VALUES)


def operator_values(cluster_id: str, shard_address: str) -> dict[str, str]:
    return {**IMAGE_VALUES, "clusterID": cluster_id, "shardAddress": shard_address}


# Release name per chart directory, as skaffold.yaml names them.
RELEASES = {
    "bigfleet": "bigfleet",
    "bigfleet-operator": "bigfleet-operator",
    "bigfleet-unschedulable-pod-controller": "bigfleet-pod-controller",
}


def values_by_chart() -> dict[str, dict[str, str]]:
    """Every value this tier sets, per chart (operator values with sample arguments)."""
    return {
        "bigfleet": MANAGEMENT_VALUES,
        "bigfleet-operator": operator_values("e2e-a", f"10.0.0.1:{SHARD_NODEPORT}"),
        "bigfleet-unschedulable-pod-controller": POD_CONTROLLER_VALUES,
    }


T = TypeVar("T")


class KindLike(Protocol):
    """What the tests use of pytest-kind's KindCluster."""

    name: str
    kubeconfig_path: Path

    def create(self, config_file: str | Path | None = None) -> None: ...
    def delete(self) -> None: ...
    def load_docker_image(self, docker_image: str) -> None: ...
    def kubectl(self, *args: str, **kwargs: Any) -> str: ...


def cluster_name(source: str) -> str:
    """The e2e cluster made from kind/<source>.yaml. Its own name, so a run never reuses
    or deletes the clusters kind/up.sh made."""
    return f"bigfleet-e2e-{source}"


def kind_config(source: str, name: str, out_dir: Path) -> Path:
    """kind/<source>.yaml renamed to `name`, without host port mappings (the e2e clusters
    must not collide with the developer loop's clusters on the host's ports)."""
    config = yaml.safe_load((KIND_DIR / f"{source}.yaml").read_text())
    config["name"] = name
    for node in config.get("nodes") or []:
        node.pop("extraPortMappings", None)
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_until(probe: Callable[[], T | None], what: str, timeout_s: float = 300) -> T:
    """Call `probe` until it returns something truthy, under a deadline; return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(2)


def run(*command: str, stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


class Cluster:
    """One kind cluster, with JSON reads, applies and helm releases."""

    def __init__(self, kind: KindLike) -> None:
        self.kind = kind

    @property
    def name(self) -> str:
        return self.kind.name

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return run("kubectl", "--kubeconfig", str(self.kind.kubeconfig_path), *args, stdin=stdin)

    def items(
        self, resource: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        args = ["get", resource, "-o", "json"]
        args += ["-n", namespace] if namespace else []
        args += ["-l", selector] if selector else []
        found: list[dict[str, Any]] = json.loads(self.kubectl(*args))["items"]
        return found

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", resource, name, "-o", "json", *(["-n", namespace] if namespace else [])]
        found: dict[str, Any] = json.loads(self.kubectl(*args))
        return found

    def apply(self, *manifests: Mapping[str, Any]) -> None:
        self.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)}),
        )

    def create_if_absent(self, manifest: Mapping[str, Any]) -> bool:
        """Create the object; False when one of that name already exists."""
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kind.kubeconfig_path), "create", "-f", "-"],
            input=json.dumps(manifest),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return True
        if "AlreadyExists" in done.stderr or "already exists" in done.stderr:
            return False
        raise AssertionError(f"creating {manifest['kind']} failed: {done.stderr}")

    def helm_install(
        self, release: str, chart: str, values: Mapping[str, str], timeout: str = "10m"
    ) -> None:
        sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
        run(
            "helm", "--kubeconfig", str(self.kind.kubeconfig_path),
            "upgrade", "--install", release, str(CHARTS_DIR / chart),
            "--namespace", NAMESPACE, "--create-namespace", "--wait", "--timeout", timeout,
            *sets,
        )  # fmt: skip

    def node_address(self) -> str:
        """The control-plane node's address on the `kind` Docker network."""
        template = '{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}'
        address = run("docker", "inspect", "-f", template, f"{self.name}-control-plane").strip()
        if not address:
            raise AssertionError(f"{self.name} has no address on the kind network")
        return address


def demand_pod(name: str, namespace: str, cpu: str) -> dict[str, Any]:
    """A pod only a fake machine fits: no kind node carries the fake's instance type."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "e2e-demand"}},
        "spec": {
            "nodeSelector": {INSTANCE_TYPE_LABEL: FAKE_INSTANCE_TYPE},
            "containers": [
                {
                    # Never started: kwok only pretends to run pods on its nodes.
                    "name": "demand",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": {"cpu": cpu}},
                }
            ],
        },
    }


def node_for(upcoming: Mapping[str, Any]) -> dict[str, Any]:
    """The Node a booted machine registers: named after the machine, with the labels and
    resources its UpcomingNode announced, handed to kwok to keep Ready.

    The e2e test plays this step itself because the management cluster's fake
    provider cannot reach a managed cluster's API server to register it.
    """
    spec = upcoming.get("spec") or {}
    name = str(upcoming["status"]["nodeRef"]["name"])
    capacity = {**(spec.get("resources") or {}), "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {**(spec.get("labels") or {}), "kubernetes.io/hostname": name},
            "annotations": {KWOK_ANNOTATION: "fake"},
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def phase(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("status") or {}).get("phase")
    return str(value) if value is not None else None
