"""The Helm charts lint, render what each value set promises, and the API server takes it.

helm is built with the other control-plane binaries by scripts/build-control-plane.sh;
without it these tests fail, they do not skip. Rendered manifests go to the session's
real API server with a server-side dry run. The RBAC objects are applied for real and
checked with the credentials a pod would get: every component logs in as its service
account, so the test asks the API server for a token of that account (as the kubelet's
projection does).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import kopf
import kr8s
import kr8s.asyncio
import pytest
import yaml
from prometheus_client import CollectorRegistry

from bigfleet import pki, probes
from bigfleet.cli import main as bigfleet_cli
from bigfleet.controlplane import KUBE_VERSION, LocalControlPlane, find_binaries
from bigfleet.controlplane.chain import BOOTSTRAP_GROUP
from bigfleet.crd import crd_dir
from bigfleet.operators.operator.app import _connection
from bigfleet.operators.podcontroller.app import load_defaults
from bigfleet.providers_fake.config import FleetConfig

Manifest = dict[str, Any]

CHARTS = Path(__file__).resolve().parents[2] / "charts"
BIGFLEET = CHARTS / "bigfleet"
OPERATOR = CHARTS / "bigfleet-operator"
POD_CONTROLLER = CHARTS / "bigfleet-unschedulable-pod-controller"
CRDS_CHART = CHARTS / "bigfleet-crds"
EVERY_CHART = (BIGFLEET, OPERATOR, POD_CONTROLLER, CRDS_CHART)

PROVIDERS = {"shard": {"providers": [{"name": "metal", "address": "metal.providers.svc:7800"}]}}
OPERATOR_REQUIRED = {"clusterID": "prod-eu-1", "shardAddress": "shard-0.fleet.example:7780"}
ISSUER = {"name": "fleet-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
CERT_MANAGER = {"tls": {"certManager": {"enabled": True, "issuerRef": ISSUER}}}
# Existing kubernetes.io/tls Secrets for every component, the bundled etcd included.
TLS_SECRETS: Manifest = {
    "coordinator": {
        "tls": {"secretName": "fleet-admin"},
        "etcdTLS": {"secretName": "fleet-etcd-client"},
    },
    "etcd": {"tls": {"secretName": "fleet-etcd"}},
    "shard": {
        **PROVIDERS["shard"],
        "replicas": 3,
        "tls": {"secretNames": ["fleet-shard-a", "fleet-shard-b", "fleet-shard-c"]},
    },
    "fakeProvider": {"enabled": True, "tls": {"secretName": "fleet-provider"}},
}
TLS_DIR = "/etc/bigfleet/tls"
TLS_KEYS = ("tls.crt", "tls.key", "ca.crt")
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
RBAC_KINDS = {
    "ServiceAccount",
    "Secret",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
}

# What a join template really looks like: Jinja2 blocks, quotes, markup characters
# that JSON escapes, and a trailing newline; all of it must reach the file unchanged.
JOIN_TEMPLATE = """#cloud-config
# cluster {{ cluster_id }}, request {{ request_id }}
write_files:
  - path: /etc/kubernetes/bootstrap-kubelet.conf
    content: |
      server: "{{ api_server }}" & token <{{ token }}>
{% if labels %}kubelet_node_labels: "{{ labels | dictsort | map('join', '=') | join(',') }}"
{% endif %}"""

# The fields of prometheus-operator's ServiceMonitor the chart uses, typed as upstream
# types them and nothing else, so a misspelt field is refused by strict field validation.
SERVICE_MONITOR_CRD: Manifest = yaml.safe_load("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors,
          singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector, endpoints]
              properties:
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: &duration
                        type: string
                        pattern: "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
                      scrapeTimeout: *duration
""")


class Helm:
    """The cached helm binary, kept away from the user's helm configuration."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120
        )

    def _values_file(self, values: Manifest) -> Path:
        text = json.dumps(values, sort_keys=True)  # JSON is YAML
        path = self.home / f"values-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        path.write_text(text)
        return path

    def lint(self, chart: Path, values: Manifest) -> subprocess.CompletedProcess[str]:
        values_file = str(self._values_file(values))
        return self.run("lint", "--strict", str(chart), "--values", values_file)

    def template(
        self, chart: Path, values: Manifest, namespace: str = "bigfleet-system", release: str = "r1"
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template",
            release,
            str(chart),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            str(self._values_file(values)),
        )

    def notes(self, chart: Path, values: Manifest, namespace: str, kubeconfig: Path) -> str:
        """NOTES.txt as `helm install` prints it (a client-side dry run asks the cluster
        only for its version)."""
        result = self.run(
            "install",
            "r1",
            str(chart),
            "--dry-run=client",
            "--namespace",
            namespace,
            "--kubeconfig",
            str(kubeconfig),
            "--values",
            str(self._values_file(values)),
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.partition("\nNOTES:\n")[2]

    def render(
        self, chart: Path, values: Manifest, namespace: str = "bigfleet-system", release: str = "r1"
    ) -> Rendered:
        result = self.template(chart, values, namespace, release)
        assert result.returncode == 0, result.stderr
        return Rendered(result.stdout)


class Rendered:
    """A chart's rendered manifests, looked up by kind and name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.docs: list[Manifest] = [d for d in yaml.safe_load_all(text) if d]

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.docs}

    def of(self, kind: str) -> list[Manifest]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, suffix: str) -> Manifest:
        found = [d for d in self.of(kind) if d["metadata"]["name"].endswith(suffix)]
        assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in found]}"
        return found[0]

    def only(self, kinds: set[str]) -> str:
        return yaml.safe_dump_all([d for d in self.docs if d["kind"] in kinds])

    def without(self, kinds: set[str]) -> Rendered:
        return Rendered(self.only(self.kinds() - kinds))


def containers(workload: Manifest) -> dict[str, Manifest]:
    spec = workload["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def args_of(workload: Manifest, container: str) -> list[str]:
    return list(containers(workload)[container]["args"])


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} in {args}"
    return values[0]


def rules_of(role: Manifest) -> dict[str, set[str]]:
    """resource (with its group) -> verbs."""
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = f"{resource}.{group}" if group else resource
                granted.setdefault(key, set()).update(rule["verbs"])
    return granted


def dry_run(control_plane: LocalControlPlane, manifests: str) -> str:
    result = control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=manifests, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_applied(out: str, rendered: Rendered) -> None:
    """kubectl reports every rendered object, and nothing else, as applied in the dry run."""
    applied = set()
    for line in out.splitlines():
        resource, _, outcome = line.partition(" ")
        assert outcome == "serverside-applied (server dry run)", line
        kind_group, _, name = resource.partition("/")
        applied.add((kind_group.split(".")[0], name))
    assert applied == {(d["kind"].lower(), d["metadata"]["name"]) for d in rendered.docs}


def assert_namespaced(
    rendered: Rendered, namespace: str, elsewhere: frozenset[str] = frozenset()
) -> None:
    for doc in rendered.docs:
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"], doc["metadata"]["name"]
        elif doc["metadata"]["name"] not in elsewhere:
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]


def parse_cli(args: list[str]) -> click.Context:
    """Parse a container's arguments as `bigfleet` would, stopping short of running it.

    Every option, type, range and callback is checked; a misspelt flag or a bad value
    raises click's usage error.
    """
    command: click.Command = bigfleet_cli
    name, rest = "bigfleet", list(args)
    parent: click.Context | None = None
    while isinstance(command, click.Group):
        at = next(i for i, a in enumerate(rest) if not a.startswith("-"))
        parent = command.make_context(name, rest[: at + 1], parent=parent)
        sub = command.get_command(parent, rest[at])
        assert sub is not None, f"no command {rest[at]!r}"
        command, name, rest = sub, rest[at], rest[at + 1 :]
    return command.make_context(name, rest, parent=parent)


@functools.cache
def tls_secret_data() -> dict[str, bytes]:
    """A kubernetes.io/tls Secret's files: a real CA and a certificate it signed."""
    validity = datetime.timedelta(days=1)
    authority = pki.Authority.create("chart-test-ca", validity)
    cert, key = authority.issue(pki.name("chart-test"), validity=validity, dns=["localhost"])
    ca = pki.cert_pem(authority.cert)
    return {"tls.crt": pki.cert_pem(cert), "tls.key": pki.key_pem(key), "ca.crt": ca}


def secret_files(volume: Manifest) -> dict[str, str]:
    """A Secret or projected volume of kubernetes.io/tls Secrets: path in the volume ->
    the Secret and key it shows."""
    if "secret" in volume:
        return {key: f"{volume['secret']['secretName']}/{key}" for key in TLS_KEYS}
    files = {}
    for source in volume["projected"]["sources"]:
        for item in source["secret"]["items"]:
            files[item["path"]] = f"{source['secret']['name']}/{item['key']}"
    return files


def materialize_mounts(
    rendered: Rendered, workload: Manifest, container: str, root: Path
) -> dict[str, Path]:
    """Write the files a container would see at its ConfigMap and TLS Secret mounts (and a
    stand-in for its generated kubeconfig) under `root`; mount path -> local directory."""
    spec = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in containers(workload)[container].get("volumeMounts", []):
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        volume = volumes.get(mount["name"], {})  # else a volume claim template
        if "configMap" in volume:
            config_map = rendered.get("ConfigMap", volume["configMap"]["name"])
            for key, text in config_map["data"].items():
                (local / key).write_text(text)
        elif "secret" in volume or "projected" in volume:
            for path, shown in secret_files(volume).items():
                (local / path).parent.mkdir(parents=True, exist_ok=True)
                (local / path).write_bytes(tls_secret_data()[shown.rpartition("/")[2]])
        elif mount["name"] == "kube":
            (local / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        mounts[mount["mountPath"]] = local
    return mounts


def expand_env(workload: Manifest, container: str, args: list[str], ordinal: int = 0) -> list[str]:
    """The arguments as the kubelet passes them to pod `ordinal`: $(VAR) expanded from the
    container's fieldRef variables."""
    fields = {
        "metadata.name": f"{workload['metadata']['name']}-{ordinal}",
        f"metadata.labels['{POD_INDEX_LABEL}']": str(ordinal),
    }
    values = {
        e["name"]: fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in containers(workload)[container].get("env", [])
        if "fieldRef" in e.get("valueFrom", {})
    }
    out = []
    for arg in args:
        for name, value in values.items():
            arg = arg.replace(f"$({name})", value)
        out.append(arg)
    return out


def tls_flags(args: list[str]) -> dict[str, str]:
    """--tls-cert, --tls-key and --tls-ca; an empty dict when none is given."""
    return {name: flag(args, name) for name in ("--tls-cert", "--tls-key", "--tls-ca")
            if any(a.startswith(f"{name}=") for a in args)}  # fmt: skip


def certificates(rendered: Rendered) -> dict[str, Manifest]:
    """cert-manager Certificates by the Secret each writes."""
    return {c["spec"]["secretName"]: c for c in rendered.of("Certificate")}


def localize(args: list[str], mounts: dict[str, Path]) -> list[str]:
    out = []
    for arg in args:
        for mount_path, local in mounts.items():
            arg = arg.replace(f"={mount_path}/", f"={local}/")
        out.append(arg)
    return out


@pytest.fixture(scope="session")
def service_monitor_crd(control_plane: LocalControlPlane) -> None:
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(SERVICE_MONITOR_CRD))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        f"crd/{SERVICE_MONITOR_CRD['metadata']['name']}",
    )


# -- lint and the schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "values"),
    [
        (BIGFLEET, PROVIDERS),
        (BIGFLEET, {**PROVIDERS, "coordinator": {"store": "embedded"}}),
        (
            BIGFLEET,
            {"fakeProvider": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}},
        ),
        (BIGFLEET, {**TLS_SECRETS, "networkPolicy": {"enabled": True}}),
        (
            BIGFLEET,
            {
                "fakeProvider": {
                    "enabled": True,
                    "fleet": {"seed": 3, "pools": [{"prefix": "m", "count": 2}]},
                    "joinNodes": True,
                }
            },
        ),
        (
            BIGFLEET,
            {
                **PROVIDERS,
                **CERT_MANAGER,
                "fakeProvider": {"enabled": True},
                "shard": {
                    **PROVIDERS["shard"],
                    "replicas": 3,
                    "perPodService": {"enabled": True},
                },
            },
        ),
        (OPERATOR, OPERATOR_REQUIRED),
        (OPERATOR, {**OPERATOR_REQUIRED, "bootstrapTemplate": JOIN_TEMPLATE}),
        (OPERATOR, {**OPERATOR_REQUIRED, "tls": {"secretName": "prod-eu-1-tls"}}),
        (OPERATOR, {**OPERATOR_REQUIRED, **CERT_MANAGER}),
        (POD_CONTROLLER, {}),
        (
            POD_CONTROLLER,
            {
                "mode": "per-pod",
                "priorityClassDefaults": {"critical": {"interruptionPenalty": "8192"}},
            },
        ),
    ],
    ids=[
        "bigfleet",
        "bigfleet-embedded",
        "bigfleet-demo",
        "bigfleet-tls-secrets",
        "bigfleet-fake-fleet",
        "bigfleet-cert-manager",
        "operator",
        "operator-template",
        "operator-tls-secret",
        "operator-cert-manager",
        "upc",
        "upc-defaults",
    ],
)
def test_every_chart_passes_strict_lint(helm: Helm, chart: Path, values: Manifest) -> None:
    result = helm.lint(chart, values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_charts_carry_name_version_and_kube_version(helm: Helm) -> None:
    for chart in EVERY_CHART:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        assert meta["apiVersion"] == "v2" and meta["name"] == chart.name
        assert meta["version"] == "0.1.0" and meta["appVersion"] == "0.1.0"
        assert meta["kubeVersion"] == ">= 1.31.0-0"
    # A cluster older than the CRDs' selectable fields is refused at render time.
    old = helm.run("template", "r1", str(POD_CONTROLLER), "--kube-version", "1.30.0")
    assert old.returncode != 0 and "kubeVersion" in old.stderr


@pytest.mark.parametrize(
    ("chart", "values", "complaints"),
    [
        (BIGFLEET, {**PROVIDERS, "coordinator": {"store": "raft"}}, ["'/coordinator/store'"]),
        (BIGFLEET, {**PROVIDERS, "coordinater": {"replicas": 3}}, ["'coordinater' not allowed"]),
        (
            BIGFLEET,
            {**PROVIDERS, "etcd": {"external": {"endpoints": ["etcd-a.db.svc"]}}},
            ["'/etcd/external/endpoints/0'"],
        ),
        (BIGFLEET, {"shard": {"reclaimCapFraction": 2}}, ["'/shard/reclaimCapFraction'"]),
        (
            BIGFLEET,
            {"shard": {"providers": [{"name": "metal"}]}},
            ["'/shard/providers/0'", "address"],
        ),
        (BIGFLEET, {**PROVIDERS, "etcd": {"replicas": 2}}, ["'/etcd/replicas'"]),
        (BIGFLEET, {**PROVIDERS, "image": {"pullPolicy": "Sometimes"}}, ["'/image/pullPolicy'"]),
        (OPERATOR, {}, ["'/clusterID'", "'/shardAddress'"]),
        (OPERATOR, {**OPERATOR_REQUIRED, "shardAddress": "shard-0"}, ["'/shardAddress'"]),
        (OPERATOR, {**OPERATOR_REQUIRED, "apiServerURL": "http://10.0.0.1"}, ["'/apiServerURL'"]),
        (OPERATOR, {**OPERATOR_REQUIRED, "metricsPort": 70000}, ["'/metricsPort'"]),
        (
            BIGFLEET,
            {**PROVIDERS, "tls": {"certManager": {"enabled": True}}},
            ["'/tls/certManager/issuerRef/name'"],
        ),
        (
            BIGFLEET,
            {**PROVIDERS, "tls": {"certManager": {"enabled": True, "issuerRef": {"kind": ""}}}},
            ["'/tls/certManager/issuerRef/kind'"],
        ),
        (
            BIGFLEET,
            {**PROVIDERS, "coordinator": {"tls": {"secretName": "Fleet_Admin"}}},
            ["'/coordinator/tls/secretName'"],
        ),
        (
            BIGFLEET,
            {**PROVIDERS, "coordinator": {"tls": {"secret": "a"}}},
            ["'secret' not allowed"],
        ),
        (
            BIGFLEET,
            {"shard": {**PROVIDERS["shard"], "tls": {"secretNames": "fleet-shard-0"}}},
            ["'/shard/tls/secretNames'"],
        ),
        (
            BIGFLEET,
            {**PROVIDERS, "networkPolicy": {"shard": {"from": [{"ipBlock": {"cidr": "any"}}]}}},
            ["'/networkPolicy/shard/from/0/ipBlock/cidr'"],
        ),
        (
            BIGFLEET,
            {**PROVIDERS, "networkPolicy": {"coordinator": {"from": [{"pods": {}}]}}},
            ["'pods' not allowed"],
        ),
        (
            OPERATOR,
            {**OPERATOR_REQUIRED, "tls": {"certManager": {"enabled": True}}},
            ["'/tls/certManager/issuerRef/name'"],
        ),
        (POD_CONTROLLER, {"mode": "everything"}, ["'/mode'"]),
        (
            POD_CONTROLLER,
            {"priorityClassDefaults": {"critical": {"interruptionPenalty": "lots"}}},
            ["'/priorityClassDefaults/critical/interruptionPenalty'"],
        ),
        (
            POD_CONTROLLER,
            {"priorityClassDefaults": {"critical": {"interruptionPenaltee": "1"}}},
            ["'interruptionPenaltee' not allowed"],
        ),
    ],
)
def test_schema_refuses_bad_values_naming_the_field(
    helm: Helm, chart: Path, values: Manifest, complaints: list[str]
) -> None:
    result = helm.template(chart, values)
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr
    for complaint in complaints:
        assert complaint in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({}, "shard.providers: name at least one capacity provider"),
        (
            {**PROVIDERS, "etcd": {"electionTimeoutMs": 200, "heartbeatIntervalMs": 50}},
            "etcd.electionTimeoutMs must be at least 5 x etcd.heartbeatIntervalMs",
        ),
        (
            {**PROVIDERS, "coordinator": {"tls": {"secretName": "fleet-admin"}}},
            "so set shard.tls.secretNames (or secretNamePrefix) too",
        ),
        (
            {**TLS_SECRETS, "fakeProvider": {"enabled": True}},
            "so set fakeProvider.tls.secretName too",
        ),
        (
            {**TLS_SECRETS, "shard": {**TLS_SECRETS["shard"], "replicas": 4}},
            "shard.tls.secretNames: name one Secret per shard ordinal, 4 for shard.replicas=4",
        ),
        (
            {
                **TLS_SECRETS,
                "shard": {
                    **TLS_SECRETS["shard"],
                    "tls": {
                        "secretNames": ["a", "b", "c"],
                        "secretNamePrefix": "fleet-shard-",
                    },
                },
            },
            "shard.tls: set secretNames or secretNamePrefix, not both",
        ),
        (
            {**TLS_SECRETS, "coordinator": {"tls": {"secretName": "fleet-admin"}}},
            "coordinator.etcdTLS.secretName: the bundled etcd requires client certificates",
        ),
        (
            {**TLS_SECRETS, "etcd": {}},
            "etcd.tls.secretName: the coordinator has an etcd client certificate",
        ),
        (
            {**TLS_SECRETS, "etcd": {**TLS_SECRETS["etcd"], "external": {"endpoints": ["e:2379"]}}},
            "etcd.tls.secretName is the bundled etcd's certificate",
        ),
    ],
    ids=[
        "no-provider",
        "etcd-timeouts",
        "tls-mix",
        "tls-mix-fake-provider",
        "shard-secrets-short",
        "shard-secrets-twice",
        "etcd-tls-no-client",
        "etcd-client-no-tls",
        "etcd-tls-external",
    ],
)
def test_values_the_schema_cannot_judge_fail_the_render_by_name(
    helm: Helm, values: Manifest, complaint: str
) -> None:
    result = helm.template(BIGFLEET, values)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


def test_chart_crds_are_the_repository_crds_byte_for_byte() -> None:
    expected = {
        BIGFLEET: {"bigfleet.lucy.sh_shards.yaml"},
        OPERATOR: {
            "bigfleet.lucy.sh_capacityrequests.yaml",
            "bigfleet.lucy.sh_upcomingnodes.yaml",
            "bigfleet.lucy.sh_availablecapacities.yaml",
        },
    }
    everything = {p.name for p in crd_dir().glob("*.yaml")}
    for chart, names in expected.items():
        assert {p.name for p in (chart / "crds").iterdir()} == names
        for name in names:
            assert (chart / "crds" / name).read_bytes() == (crd_dir() / name).read_bytes(), name
    assert set().union(*expected.values()) == everything
    assert not (POD_CONTROLLER / "crds").exists()  # it relies on the operator chart's
    # The CRD chart templates every one of them from its own copies.
    assert not (CRDS_CHART / "crds").exists()
    assert {p.name for p in (CRDS_CHART / "files").iterdir()} == everything
    for name in everything:
        assert (CRDS_CHART / "files" / name).read_bytes() == (crd_dir() / name).read_bytes(), name


# -- the bigfleet chart ------------------------------------------------------------------


def test_default_install_runs_three_coordinators_on_a_tuned_three_member_etcd(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    rendered = helm.render(BIGFLEET, PROVIDERS, namespace)
    assert rendered.kinds() == {
        "Service", "StatefulSet", "PodDisruptionBudget", "ServiceAccount",
        "ClusterRole", "ClusterRoleBinding", "NetworkPolicy", "Pod",
    }  # fmt: skip  # no Secret: every component logs in with its projected token
    assert [p["metadata"]["name"] for p in rendered.of("Pod")] == ["r1-bigfleet-test"]
    etcd = rendered.get("StatefulSet", "-etcd")
    assert etcd["spec"]["replicas"] == 3
    assert etcd["spec"]["podManagementPolicy"] == "Parallel"
    etcd_args = args_of(etcd, "etcd")
    assert flag(etcd_args, "--election-timeout") == "500"
    assert flag(etcd_args, "--heartbeat-interval") == "50"
    members = flag(etcd_args, "--initial-cluster").split(",")
    assert [m.split("=")[0] for m in members] == [f"r1-bigfleet-etcd-{i}" for i in range(3)]
    assert etcd["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    headless = rendered.get("Service", "-etcd")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert rendered.get("PodDisruptionBudget", "-etcd")["spec"]["minAvailable"] == 2  # quorum

    coordinator = rendered.get("StatefulSet", "-coordinator")
    assert coordinator["spec"]["replicas"] == 3
    args = args_of(coordinator, "coordinator")
    assert args[:2] == ["--log-level=info", "coordinator"]
    assert flag(args, "--store") == "etcd"
    assert flag(args, "--lease-ttl") == "1"  # meets the failover target with the tuned etcd
    assert flag(args, "--id") == "$(POD_NAME)"
    assert flag(args, "--etcd").split(",") == [
        f"r1-bigfleet-etcd-{i}.r1-bigfleet-etcd.{namespace}.svc:2379" for i in range(3)
    ]
    assert "--in-cluster" not in args  # the mirror is off by default
    assert coordinator["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "volumeClaimTemplates" not in coordinator["spec"]  # no state of its own on etcd
    probes = containers(coordinator)["coordinator"]
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert rendered.get("PodDisruptionBudget", "-coordinator")["spec"]["maxUnavailable"] == 1

    shard = rendered.get("StatefulSet", "-shard")
    shard_args = args_of(shard, "shard")
    assert not any(a.startswith("--id") for a in shard_args)  # shard-<ordinal> from the pod
    assert flag(shard_args, "--provider") == "metal=metal.providers.svc:7800"
    assert flag(shard_args, "--data-dir") == "/data"
    # Every replica's stable address: the shard's client finds the leader among them.
    assert flag(shard_args, "--coordinator-addr") == ",".join(
        f"r1-bigfleet-coordinator-{i}.r1-bigfleet-coordinator-headless.{namespace}.svc:7790"
        for i in range(3)
    )
    assert flag(shard_args, "--advertise-addr") == (
        f"$(POD_NAME).r1-bigfleet-shard.{namespace}.svc:7780"
    )
    # The Shard resource, as the pod's service account (its projected, rotated token).
    assert "--in-cluster" in shard_args
    assert shard["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert "kubeconfig" not in containers(shard)  # no init container writes one
    assert shard["spec"]["serviceName"] == "r1-bigfleet-shard"
    assert rendered.get("Service", "-shard")["spec"]["clusterIP"] == "None"
    claim = shard["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    shard_container = containers(shard)["shard"]
    assert {"name": "data", "mountPath": "/data"} in shard_container["volumeMounts"]
    assert shard_container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert shard_container["securityContext"]["readOnlyRootFilesystem"] is True
    assert shard_container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert shard["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    shard_role = rules_of(rendered.get("ClusterRole", "-shard"))
    assert shard_role["shards.bigfleet.lucy.sh"] == {
        "get", "list", "watch", "create", "patch", "update",
    }  # fmt: skip
    assert shard_role["shards/status.bigfleet.lucy.sh"] == {"get", "patch", "update"}
    assert not any(k.startswith("capacityrequests") for k in shard_role)

    assert_namespaced(rendered, namespace)
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_embedded_store_runs_one_coordinator_on_a_volume_and_no_etcd(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    rendered = helm.render(BIGFLEET, {**PROVIDERS, "coordinator": {"store": "embedded"}}, namespace)
    assert not [d for d in rendered.docs if "-etcd" in d["metadata"]["name"]]
    coordinator = rendered.get("StatefulSet", "-coordinator")
    assert coordinator["spec"]["replicas"] == 1  # whatever coordinator.replicas says
    args = args_of(coordinator, "coordinator")
    assert flag(args, "--store") == "embedded"
    assert flag(args, "--data-dir") == "/data"
    assert not any(a.startswith("--etcd") for a in args)
    assert coordinator["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert {"name": "data", "mountPath": "/data"} in containers(coordinator)["coordinator"][
        "volumeMounts"
    ]
    assert [p["metadata"]["name"] for p in rendered.of("PodDisruptionBudget")] == [
        "r1-bigfleet-shard"
    ]
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_external_etcd_is_dialled_and_none_is_deployed(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    endpoints = ["etcd-a.db.svc:2379", "etcd-b.db.svc:2379", "etcd-c.db.svc:2379"]
    values = {**PROVIDERS, "etcd": {"external": {"endpoints": endpoints}}}
    rendered = helm.render(BIGFLEET, values, namespace)
    assert not [d for d in rendered.docs if "-etcd" in d["metadata"]["name"]]
    assert "NetworkPolicy" not in rendered.kinds()
    coordinator = rendered.get("StatefulSet", "-coordinator")
    assert flag(args_of(coordinator, "coordinator"), "--etcd") == ",".join(endpoints)
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_service_monitor_scrapes_every_metrics_port_of_the_release(
    helm: Helm, control_plane: LocalControlPlane, namespace: str, service_monitor_crd: None
) -> None:
    values = {
        **PROVIDERS,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"team": "fleet"}}},
    }
    rendered = helm.render(BIGFLEET, values, namespace)
    monitor = rendered.get("ServiceMonitor", "r1-bigfleet")
    assert monitor["metadata"]["labels"]["team"] == "fleet"
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = {
        s["metadata"]["name"]
        for s in rendered.of("Service")
        if selector.items() <= s["metadata"]["labels"].items()
    }
    assert scraped == {"r1-bigfleet-coordinator-headless", "r1-bigfleet-shard", "r1-bigfleet-etcd"}
    port = monitor["spec"]["endpoints"][0]["port"]
    for service in rendered.of("Service"):
        if service["metadata"]["name"] in scraped:
            assert port in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [namespace]
    # Off by default.
    assert "ServiceMonitor" not in helm.render(BIGFLEET, PROVIDERS, namespace).kinds()
    assert_applied(dry_run(control_plane, rendered.text), rendered)


@pytest.mark.parametrize(
    ("chart", "values"),
    [(OPERATOR, OPERATOR_REQUIRED), (POD_CONTROLLER, {})],
    ids=["operator", "pod-controller"],
)
def test_managed_cluster_charts_offer_a_service_monitor(
    helm: Helm,
    control_plane: LocalControlPlane,
    namespace: str,
    service_monitor_crd: None,
    chart: Path,
    values: Manifest,
) -> None:
    monitored = {**values, "serviceMonitor": {"enabled": True, "labels": {"team": "fleet"}}}
    rendered = helm.render(chart, monitored, namespace)
    (monitor,) = rendered.of("ServiceMonitor")
    assert monitor["metadata"]["labels"]["team"] == "fleet"
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        s for s in rendered.of("Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert service["metadata"]["name"].endswith("-metrics")  # every replica, leader or not
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert_applied(dry_run(control_plane, rendered.text), rendered)
    assert "ServiceMonitor" not in helm.render(chart, values, namespace).kinds()  # off by default
    no_port = helm.render(chart, {**monitored, "metricsPort": 0}, namespace)
    assert "ServiceMonitor" not in no_port.kinds()  # nothing to scrape


def test_demo_values_add_the_fake_provider_and_a_service_per_shard(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    values = {
        "fakeProvider": {"enabled": True, "idle": 16},
        "shard": {"replicas": 2, "perPodService": {"enabled": True}},
    }
    rendered = helm.render(BIGFLEET, values, namespace)
    fake = rendered.get("Deployment", "-fake-provider")
    assert args_of(fake, "provider")[1:4] == ["provider", "fake", "--listen=0.0.0.0:7800"]
    assert flag(args_of(fake, "provider"), "--idle") == "16"
    shard_args = args_of(rendered.get("StatefulSet", "-shard"), "shard")
    assert flag(shard_args, "--provider") == f"fake=r1-bigfleet-fake-provider.{namespace}.svc:7800"
    for ordinal in (0, 1):
        per_pod = rendered.get("Service", f"-shard-{ordinal}")
        assert per_pod["spec"]["type"] == "LoadBalancer"
        assert per_pod["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == (
            f"r1-bigfleet-shard-{ordinal}"
        )
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_a_fleet_file_reaches_the_fake_provider_as_its_config(
    helm: Helm, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    fleet = {
        "seed": 7,
        "latency": {"creating": 1, "configuring": 0.5},
        "pools": [
            {"prefix": "gpu", "count": 4, "state": "idle", "resources": {"nvidia.com/gpu": "8"},
             "labels": {"rack": "r1"}},
            {"prefix": "spec", "count": 40, "capacity_type": "spot", "price_per_hour": 0.1},
        ],
    }  # fmt: skip
    values = {"fakeProvider": {"enabled": True, "idle": 2, "fleet": fleet, "joinNodes": True}}
    rendered = helm.render(BIGFLEET, values, namespace)
    fake = rendered.get("Deployment", "-fake-provider")
    args = args_of(fake, "provider")
    assert flag(args, "--config").startswith("/etc/bigfleet/fleet/")
    mounts = materialize_mounts(rendered, fake, "provider", tmp_path)
    parsed = parse_cli(localize(args, mounts))
    assert parsed.params["join_nodes"] is True and parsed.params["idle"] == 2
    assert FleetConfig.load(parsed.params["config_path"]) == FleetConfig.model_validate(fleet)
    assert_applied(dry_run(control_plane, rendered.text), rendered)

    # The fleet is read at start only: another one must roll the pod.
    def checksum(workload: Manifest) -> str:
        return str(workload["spec"]["template"]["metadata"]["annotations"]["checksum/fleet"])

    reseeded = {**values, "fakeProvider": {**values["fakeProvider"], "fleet": {**fleet, "seed": 8}}}
    other = helm.render(BIGFLEET, reseeded, namespace).get("Deployment", "-fake-provider")
    assert checksum(other) != checksum(fake)

    # Without a fleet or joinNodes nothing of it is rendered.
    plain = helm.render(BIGFLEET, {"fakeProvider": {"enabled": True}}, namespace)
    plain_args = args_of(plain.get("Deployment", "-fake-provider"), "provider")
    assert not any(a.startswith(("--config", "--join-nodes")) for a in plain_args)
    assert not any(c["metadata"]["name"].endswith("-fleet") for c in plain.of("ConfigMap"))
    assert "annotations" not in plain.get("Deployment", "-fake-provider")["spec"]["template"][
        "metadata"]  # fmt: skip


def test_the_longest_release_name_keeps_every_object_name_distinct_and_legal(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    release = "a" * 53  # helm's limit
    values = {"fakeProvider": {"enabled": True}, "shard": {"perPodService": {"enabled": True}}}
    rendered = helm.render(BIGFLEET, values, namespace, release)
    names = [(d["kind"], d["metadata"]["name"]) for d in rendered.docs]
    assert len(names) == len(set(names))
    for workload in rendered.of("StatefulSet"):
        # Room for "-<ordinal>" and the controller-revision-hash label of each pod.
        assert len(workload["metadata"]["name"]) <= 52
    for service in rendered.of("Service"):
        assert len(service["metadata"]["name"]) <= 63
    assert_applied(dry_run(control_plane, rendered.text), rendered)
    # cert-manager labels what it issues with the Certificate's name: a label value.
    issued = helm.render(BIGFLEET, {**values, **CERT_MANAGER}, namespace, release).of("Certificate")
    names = [c["metadata"]["name"] for c in issued]
    assert len(names) == len(set(names)) == 5  # admin, etcd client, etcd, shard-0, provider
    assert all(len(name) <= 63 for name in names), names


def test_mirroring_shard_status_gives_the_coordinator_its_account_and_rbac(helm: Helm) -> None:
    rendered = helm.render(BIGFLEET, {**PROVIDERS, "coordinator": {"mirrorShardStatus": True}})
    coordinator = rendered.get("StatefulSet", "-coordinator")
    args = args_of(coordinator, "coordinator")
    assert "--in-cluster" in args
    assert flag(args, "--mirror-interval") == "10"
    assert coordinator["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert "kubeconfig" not in containers(coordinator)
    assert "Secret" not in rendered.kinds()  # no long-lived token
    role = rules_of(rendered.get("ClusterRole", "-coordinator"))
    assert role == {
        "shards.bigfleet.lucy.sh": {"get", "list", "watch", "create"},
        "shards/status.bigfleet.lucy.sh": {"get", "patch", "update"},
    }
    # Without the shard resource, the shard needs neither RBAC nor a token.
    quiet = helm.render(BIGFLEET, {"shard": {**PROVIDERS["shard"], "publishShardResource": False}})
    assert "ClusterRole" not in quiet.kinds() and "Secret" not in quiet.kinds()
    quiet_shard = quiet.get("StatefulSet", "-shard")
    assert "--in-cluster" not in args_of(quiet_shard, "shard")
    assert quiet_shard["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# -- mutual TLS and NetworkPolicies ------------------------------------------------------


def assert_tls_from(workload: Manifest, container: str, directory: str, secret: str) -> None:
    """The container gets the three flags, pointing into a read-only mount of `secret`."""
    args = args_of(workload, container)
    assert tls_flags(args) == {
        "--tls-cert": f"{directory}/tls.crt",
        "--tls-key": f"{directory}/tls.key",
        "--tls-ca": f"{directory}/ca.crt",
    }
    mount = next(m for m in containers(workload)[container]["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == secret


def test_tls_secrets_reach_every_process_and_each_shard_its_own(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    rendered = helm.render(BIGFLEET, TLS_SECRETS, namespace)
    assert "Certificate" not in rendered.kinds()  # the Secrets exist already
    coordinator = rendered.get("StatefulSet", "-coordinator")
    assert_tls_from(coordinator, "coordinator", TLS_DIR, "fleet-admin")
    fake = rendered.get("Deployment", "-fake-provider")
    assert_tls_from(fake, "provider", TLS_DIR, "fleet-provider")

    # One pod template for every shard: each ordinal's Secret in its own folder of one
    # projected volume, and the pod-index label picks the folder.
    shard = rendered.get("StatefulSet", "-shard")
    args = args_of(shard, "shard")
    assert tls_flags(args) == {
        "--tls-cert": f"{TLS_DIR}/shard-$(POD_INDEX)/tls.crt",
        "--tls-key": f"{TLS_DIR}/shard-$(POD_INDEX)/tls.key",
        "--tls-ca": f"{TLS_DIR}/shard-$(POD_INDEX)/ca.crt",
    }
    env = {e["name"]: e for e in containers(shard)["shard"]["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        f"metadata.labels['{POD_INDEX_LABEL}']"
    )
    assert {"name": "tls", "mountPath": TLS_DIR, "readOnly": True} in containers(shard)["shard"][
        "volumeMounts"
    ]
    volume = next(v for v in shard["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    files = secret_files(volume)
    secrets = TLS_SECRETS["shard"]["tls"]["secretNames"]
    for ordinal, secret in enumerate(secrets):
        expanded = tls_flags(expand_env(shard, "shard", args, ordinal))
        for name, key in zip(("--tls-cert", "--tls-key", "--tls-ca"), TLS_KEYS, strict=True):
            path = expanded[name].removeprefix(f"{TLS_DIR}/")
            assert files[path] == f"{secret}/{key}", (ordinal, name)
    assert len(files) == 3 * len(secrets)  # nothing else in the volume

    # The bundled etcd serves clients and peers over TLS and demands client certificates;
    # the coordinator presents its own.
    etcd = rendered.get("StatefulSet", "-etcd")
    etcd_args = args_of(etcd, "etcd")
    assert flag(etcd_args, "--listen-client-urls") == "https://0.0.0.0:2379"
    assert flag(etcd_args, "--advertise-client-urls").startswith("https://$(POD_NAME).")
    assert all(
        m.split("=", 1)[1].startswith("https://")
        for m in flag(etcd_args, "--initial-cluster").split(",")
    )
    assert flag(etcd_args, "--listen-metrics-urls") == "http://0.0.0.0:2381"  # probes
    for name, key in (
        ("cert-file", "tls.crt"),
        ("key-file", "tls.key"),
        ("trusted-ca-file", "ca.crt"),
    ):
        assert flag(etcd_args, f"--{name}") == f"/etc/etcd/tls/{key}"
        assert flag(etcd_args, f"--peer-{name}") == f"/etc/etcd/tls/{key}"
    assert {"--client-cert-auth", "--peer-client-cert-auth"} <= set(etcd_args)
    etcd_volumes = {v["name"]: v for v in etcd["spec"]["template"]["spec"]["volumes"]}
    assert etcd_volumes["tls"]["secret"]["secretName"] == "fleet-etcd"
    coordinator_args = args_of(coordinator, "coordinator")
    assert flag(coordinator_args, "--etcd-cacert") == "/etc/bigfleet/etcd-tls/ca.crt"
    assert flag(coordinator_args, "--etcd-cert") == "/etc/bigfleet/etcd-tls/tls.crt"
    assert flag(coordinator_args, "--etcd-key") == "/etc/bigfleet/etcd-tls/tls.key"
    # --etcd takes HOST:PORT (cli/coordinator.py); the --etcd-* files make it TLS.
    assert flag(coordinator_args, "--etcd").split(",") == [
        f"r1-bigfleet-etcd-{i}.r1-bigfleet-etcd.{namespace}.svc:2379" for i in range(3)
    ]
    coordinator_volumes = {v["name"]: v for v in coordinator["spec"]["template"]["spec"]["volumes"]}
    assert coordinator_volumes["etcd-tls"]["secret"]["secretName"] == "fleet-etcd-client"

    # Plaintext stays the default: no flag, no volume, no variable.
    plain = helm.render(BIGFLEET, {**PROVIDERS, "fakeProvider": {"enabled": True}}, namespace)
    for workload in plain.of("StatefulSet") + plain.of("Deployment"):
        for container in containers(workload).values():
            assert not any("tls" in a or a.startswith("--etcd-") for a in container.get("args", []))
            assert "POD_INDEX" not in {e["name"] for e in container.get("env", [])}
        assert not {"tls", "etcd-tls"} & {
            v["name"] for v in workload["spec"]["template"]["spec"].get("volumes", [])
        }
    assert not any("https://" in a for a in args_of(plain.get("StatefulSet", "-etcd"), "etcd"))

    assert_namespaced(rendered, namespace)
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_shard_secrets_by_prefix_follow_the_ordinal(helm: Helm) -> None:
    values = {
        **TLS_SECRETS,
        "shard": {
            **TLS_SECRETS["shard"],
            "replicas": 2,
            "tls": {"secretNamePrefix": "fleet-shard-"},
        },
    }
    shard = helm.render(BIGFLEET, values).get("StatefulSet", "-shard")
    volume = next(v for v in shard["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == [
        "fleet-shard-0",
        "fleet-shard-1",
    ]
    # A missing Secret stops only its own shard, not every pod that mounts it.
    assert all(s["secret"]["optional"] is True for s in volume["projected"]["sources"])


def test_cert_manager_mode_issues_one_certificate_per_identity(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    values = {
        **CERT_MANAGER,
        "fakeProvider": {"enabled": True},
        "shard": {
            **PROVIDERS["shard"],
            "replicas": 3,
            "perPodService": {"enabled": True},
            "tls": {"extraDNSNames": ["shard-{ordinal}.fleet.example"]},
        },
    }
    rendered = helm.render(BIGFLEET, values, namespace)
    issued = certificates(rendered)
    coordinator = "r1-bigfleet-coordinator-tls"
    shards = [f"r1-bigfleet-shard-{i}-tls" for i in range(3)]
    assert set(issued) == {
        coordinator,
        *shards,
        "r1-bigfleet-fake-provider-tls",
        "r1-bigfleet-etcd-tls",
        "r1-bigfleet-coordinator-etcd-client-tls",
    }
    for certificate in issued.values():
        assert certificate["apiVersion"] == "cert-manager.io/v1"
        spec = certificate["spec"]
        assert spec["issuerRef"] == ISSUER
        assert spec["usages"] == ["digital signature", "server auth", "client auth"]
        assert certificate["metadata"]["namespace"] == namespace

    # Exactly one bigfleet:// URI SAN per BigFleet identity, none for the others.
    assert issued[coordinator]["spec"]["uris"] == ["bigfleet://admin"]
    for ordinal, secret in enumerate(shards):
        assert issued[secret]["spec"]["uris"] == [f"bigfleet://shard/shard-{ordinal}"]
    for secret in ("r1-bigfleet-fake-provider-tls", "r1-bigfleet-etcd-tls",
                   "r1-bigfleet-coordinator-etcd-client-tls"):  # fmt: skip
        assert "uris" not in issued[secret]["spec"], secret

    # DNS names: what each server is dialled by.
    svc = f"{namespace}.svc"
    assert issued[coordinator]["spec"]["dnsNames"] == [
        "r1-bigfleet-coordinator",
        f"r1-bigfleet-coordinator.{namespace}",
        f"r1-bigfleet-coordinator.{svc}",
        *(f"r1-bigfleet-coordinator-{i}.r1-bigfleet-coordinator-headless.{svc}" for i in range(3)),
    ]
    shard_args = args_of(rendered.get("StatefulSet", "-shard"), "shard")
    dialled = {a.rpartition(":")[0] for a in flag(shard_args, "--coordinator-addr").split(",")}
    assert dialled <= set(issued[coordinator]["spec"]["dnsNames"])
    for ordinal, secret in enumerate(shards):
        assert issued[secret]["spec"]["dnsNames"] == [
            f"r1-bigfleet-shard-{ordinal}.r1-bigfleet-shard.{svc}",
            f"r1-bigfleet-shard-{ordinal}",
            f"r1-bigfleet-shard-{ordinal}.{namespace}",
            f"r1-bigfleet-shard-{ordinal}.{svc}",
            f"shard-{ordinal}.fleet.example",
        ]
    [provider] = [
        a.split("=", 2)[2].rpartition(":")[0]
        for a in shard_args
        if a.startswith("--provider=fake=")
    ]
    assert provider in issued["r1-bigfleet-fake-provider-tls"]["spec"]["dnsNames"]
    assert issued["r1-bigfleet-etcd-tls"]["spec"]["dnsNames"][3:] == [
        f"r1-bigfleet-etcd-{i}.r1-bigfleet-etcd.{svc}" for i in range(3)
    ]

    # The pods mount the Secrets the Certificates write.
    assert_tls_from(
        rendered.get("StatefulSet", "-coordinator"), "coordinator", TLS_DIR, coordinator
    )
    assert_tls_from(
        rendered.get("Deployment", "-fake-provider"), "provider", TLS_DIR,
        "r1-bigfleet-fake-provider-tls",
    )  # fmt: skip
    shard = rendered.get("StatefulSet", "-shard")
    volume = next(v for v in shard["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == shards
    etcd = rendered.get("StatefulSet", "-etcd")
    assert flag(args_of(etcd, "etcd"), "--listen-client-urls").startswith("https://")
    assert {v["name"]: v for v in etcd["spec"]["template"]["spec"]["volumes"]}["tls"]["secret"][
        "secretName"
    ] == "r1-bigfleet-etcd-tls"

    # A Secret named under a component is where its Certificate writes.
    named = helm.render(BIGFLEET, {**values, "coordinator": {"tls": {"secretName": "fleet-admin"}}})
    assert certificates(named)["fleet-admin"]["spec"]["uris"] == ["bigfleet://admin"]

    # cert-manager's CRDs are not installed on the test API server, so it cannot take
    # Certificates, not even in a dry run; everything else must go through.
    rest = rendered.without({"Certificate"})
    assert_namespaced(rendered, namespace)
    assert_applied(dry_run(control_plane, rest.text), rest)


def test_network_policies_open_each_port_to_its_clients_only(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    operators = [{"ipBlock": {"cidr": "10.20.0.0/16"}}, {"ipBlock": {"cidr": "2001:db8::/48"}}]
    admins = [{"namespaceSelector": {"matchLabels": {"team": "fleet"}}}]
    values = {
        **PROVIDERS,
        "fakeProvider": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "shard": {"from": operators},
            "coordinator": {"from": admins},
        },
    }
    rendered = helm.render(BIGFLEET, values, namespace)
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.of("NetworkPolicy")}
    assert set(policies) == {
        "r1-bigfleet-shard",
        "r1-bigfleet-coordinator",
        "r1-bigfleet-etcd",
        "r1-bigfleet-fake-provider",
    }

    def pods(component: str) -> Manifest:
        return {"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "bigfleet",
            "app.kubernetes.io/instance": "r1",
            "app.kubernetes.io/component": component,
        }}}  # fmt: skip

    monitoring = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]

    def rules(spec: Manifest) -> dict[int, list[Manifest] | None]:
        """port -> allowed sources (None: any)."""
        assert spec["policyTypes"] == ["Ingress"]
        out: dict[int, list[Manifest] | None] = {}
        for rule in spec["ingress"]:
            for port in rule["ports"]:
                assert port["port"] not in out
                out[port["port"]] = rule.get("from")
        return out

    for name, component in (
        ("r1-bigfleet-shard", "shard"),
        ("r1-bigfleet-coordinator", "coordinator"),
    ):
        assert policies[name]["podSelector"] == pods(component)["podSelector"]
    # The release's `helm test` pod asks shards and coordinators for /readyz.
    assert rules(policies["r1-bigfleet-shard"]) == {
        7780: operators,
        8780: [*monitoring, pods("test")],
    }
    assert rules(policies["r1-bigfleet-coordinator"]) == {
        7790: [pods("shard"), pods("coordinator"), *admins],
        8790: [*monitoring, pods("test")],
    }
    assert rules(policies["r1-bigfleet-fake-provider"]) == {7800: [pods("shard")]}
    etcd = policies["r1-bigfleet-etcd"]["ingress"]
    assert etcd[0] == {"from": [pods("coordinator")], "ports": [{"port": 2379}]}
    assert etcd[1]["from"] == [pods("etcd")]
    assert etcd[2] == {"from": monitoring, "ports": [{"port": 2381}]}

    # By default the shards' gRPC port admits any source (operators in other clusters),
    # and nothing else is open to everyone.
    default = helm.render(BIGFLEET, {**PROVIDERS, "networkPolicy": {"enabled": True}}, namespace)
    shard_rules = rules(default.get("NetworkPolicy", "-shard")["spec"])
    assert shard_rules == {7780: None, 8780: [*monitoring, pods("test")]}
    assert rules(default.get("NetworkPolicy", "-coordinator")["spec"])[7790] == [
        pods("shard"),
        pods("coordinator"),
    ]
    # Another list replaces the default instead of merging with it.
    scrapers = [{"namespaceSelector": {"matchLabels": {"team": "observability"}}}]
    other = helm.render(
        BIGFLEET, {**PROVIDERS, "networkPolicy": {"enabled": True, "metrics": {"from": scrapers}}}
    )
    assert rules(other.get("NetworkPolicy", "-shard")["spec"])[8780] == [*scrapers, pods("test")]
    anyone = helm.render(
        BIGFLEET, {**PROVIDERS, "networkPolicy": {"enabled": True, "metrics": {"from": []}}}
    )
    assert rules(anyone.get("NetworkPolicy", "-coordinator")["spec"])[8790] is None
    # Off by default; the bundled etcd keeps its own.
    assert [
        p["metadata"]["name"] for p in helm.render(BIGFLEET, PROVIDERS).of("NetworkPolicy")
    ] == ["r1-bigfleet-etcd"]

    assert_namespaced(rendered, namespace)
    assert_applied(dry_run(control_plane, rendered.text), rendered)
    assert_applied(dry_run(control_plane, default.text), default)


# -- the operator and pod-controller charts ---------------------------------------------


def test_operator_bootstrap_template_reaches_its_file_unchanged(
    helm: Helm, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    values = {**OPERATOR_REQUIRED, "apiServerURL": "https://api.prod-eu-1.example:6443"}
    rendered = helm.render(OPERATOR, {**values, "bootstrapTemplate": JOIN_TEMPLATE}, namespace)
    config_map = rendered.get("ConfigMap", "-bootstrap-template")
    assert config_map["data"] == {"bootstrap.tmpl": JOIN_TEMPLATE}
    deployment = rendered.get("Deployment", "r1-bigfleet-operator")
    # Two replicas on one Lease: only the leader holds a session, so a rollout may overlap.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-elect" in args_of(deployment, "operator")
    assert flag(args_of(deployment, "operator"), "--leader-election-namespace") == namespace
    alone = helm.render(
        OPERATOR, {**values, "replicas": 1, "leaderElection": {"enabled": False}}, namespace
    )
    single = alone.get("Deployment", "r1-bigfleet-operator")
    assert single["spec"]["strategy"]["type"] == "Recreate"  # never two sessions
    assert "--leader-elect" not in args_of(single, "operator")
    args = args_of(deployment, "operator")
    assert flag(args, "--cluster-id") == "prod-eu-1"
    assert flag(args, "--shard") == "shard-0.fleet.example:7780"
    assert flag(args, "--api-server-url") == "https://api.prod-eu-1.example:6443"
    assert flag(args, "--metrics-port") == "8770"
    mounts = materialize_mounts(rendered, deployment, "operator", tmp_path)
    template_file = Path(flag(args, "--bootstrap-template"))
    assert (mounts[str(template_file.parent)] / template_file.name).read_text() == JOIN_TEMPLATE
    # A new template restarts the pod.
    plain = helm.render(OPERATOR, values, namespace)
    annotation = "checksum/bootstrap-template"
    assert (
        plain.get("Deployment", "r1-bigfleet-operator")["spec"]["template"]["metadata"][
            "annotations"
        ][annotation]
        != deployment["spec"]["template"]["metadata"]["annotations"][annotation]
    )
    assert "ConfigMap" not in plain.kinds()
    assert not any(a.startswith("--bootstrap-template") for a in args_of(
        plain.get("Deployment", "r1-bigfleet-operator"), "operator"
    ))  # fmt: skip
    assert_namespaced(rendered, namespace, frozenset({"r1-bigfleet-operator-bootstrap-tokens"}))
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_operator_presents_its_cluster_identity_over_tls(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    values = {
        **OPERATOR_REQUIRED,
        "bootstrapTemplate": JOIN_TEMPLATE,
        "tls": {"secretName": "prod-eu-1-tls"},
    }
    rendered = helm.render(OPERATOR, values, namespace)
    deployment = rendered.get("Deployment", "r1-bigfleet-operator")
    assert_tls_from(deployment, "operator", TLS_DIR, "prod-eu-1-tls")
    assert "Certificate" not in rendered.kinds()
    # Beside, not above, the template's folder: neither mount hides the other.
    mounts = [m["mountPath"] for m in containers(deployment)["operator"]["volumeMounts"]]
    assert not any(a != b and b.startswith(a + "/") for a in mounts for b in mounts), mounts
    assert_applied(dry_run(control_plane, rendered.text), rendered)

    issued = helm.render(OPERATOR, {**OPERATOR_REQUIRED, **CERT_MANAGER}, namespace)
    certificate = issued.get("Certificate", "r1-bigfleet-operator-tls")
    assert certificate["spec"]["uris"] == ["bigfleet://cluster/prod-eu-1"]
    assert "dnsNames" not in certificate["spec"]  # it only dials
    assert certificate["spec"]["issuerRef"] == ISSUER
    assert certificate["spec"]["usages"] == ["digital signature", "server auth", "client auth"]
    assert_tls_from(
        issued.get("Deployment", "r1-bigfleet-operator"), "operator", TLS_DIR,
        certificate["spec"]["secretName"],
    )  # fmt: skip
    # No TLS by default.
    plain = helm.render(OPERATOR, OPERATOR_REQUIRED, namespace)
    assert not tls_flags(args_of(plain.get("Deployment", "r1-bigfleet-operator"), "operator"))
    # cert-manager's CRDs are not on the test API server: dry-run the rest.
    rest = issued.without({"Certificate"})
    assert_applied(dry_run(control_plane, rest.text), rest)


def test_operator_rbac_matches_the_spec(helm: Helm) -> None:
    rendered = helm.render(OPERATOR, OPERATOR_REQUIRED)
    role = rules_of(rendered.get("ClusterRole", "r1-bigfleet-operator"))
    assert role["capacityrequests.bigfleet.lucy.sh"] == {"get", "list", "watch"}
    assert {"patch", "update"} <= role["capacityrequests/status.bigfleet.lucy.sh"]
    for kind in ("upcomingnodes", "availablecapacities"):
        assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= role[
            f"{kind}.bigfleet.lucy.sh"
        ]
    assert role["nodes"] == {"get", "list", "watch", "patch", "update", "delete"}
    assert role["pods"] == {"get", "list", "watch"}
    assert role["pods/eviction"] == {"create"}
    assert "secrets" not in role  # only in kube-system, below
    tokens = rendered.get("Role", "-bootstrap-tokens")
    assert tokens["metadata"]["namespace"] == "kube-system"
    assert rules_of(tokens) == {"secrets": {"create"}}
    join = {
        b["roleRef"]["name"]: b["subjects"]
        for b in rendered.of("ClusterRoleBinding")
        if b["subjects"][0]["kind"] == "Group"
    }
    assert set(join) == {
        "system:node-bootstrapper",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
    }
    for subjects in join.values():
        assert subjects[0]["name"] == BOOTSTRAP_GROUP
    off = helm.render(OPERATOR, {**OPERATOR_REQUIRED, "bootstrapTokens": {"grantJoinRoles": False}})
    assert all(b["subjects"][0]["kind"] != "Group" for b in off.of("ClusterRoleBinding"))


def test_pod_controller_defaults_file_is_what_the_controller_loads(
    helm: Helm, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    defaults = {
        "critical": {"interruptionPenalty": "8192", "reclamationPenalty": 65536},
        "batch-low": {"interruptionPenalty": "500m"},
    }
    values = {"mode": "per-pod", "priorityClassDefaults": defaults}
    rendered = helm.render(POD_CONTROLLER, values, namespace)
    deployment = rendered.get("Deployment", "r1-bigfleet-unschedulable-pod-controller")
    args = args_of(deployment, "pod-controller")
    assert flag(args, "--mode") == "per-pod"
    assert flag(args, "--metrics-port") == "8080"
    mounts = materialize_mounts(rendered, deployment, "pod-controller", tmp_path)
    path = Path(flag(args, "--priority-class-defaults"))
    loaded = load_defaults(mounts[str(path.parent)] / path.name)
    assert loaded == {
        "critical": {"interruptionPenalty": "8192", "reclamationPenalty": "65536"},
        "batch-low": {"interruptionPenalty": "500m"},
    }
    role = rules_of(rendered.get("ClusterRole", "r1-bigfleet-unschedulable-pod-controller"))
    assert role["pods"] == {"get", "list", "watch"}
    assert {"create", "delete", "list", "watch", "patch"} <= role[
        "capacityrequests.bigfleet.lucy.sh"
    ]
    assert "nodes" not in role and "secrets" not in role
    plain = helm.render(POD_CONTROLLER, {}, namespace)
    assert "ConfigMap" not in plain.kinds()
    assert_namespaced(rendered, namespace)
    assert_applied(dry_run(control_plane, rendered.text), rendered)


def test_install_notes_tell_how_to_check_each_release(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig_path
    notes = helm.notes(BIGFLEET, PROVIDERS, namespace, kubeconfig)
    assert "kubectl get shards -o wide" in notes
    replicas = ",".join(
        f"r1-bigfleet-coordinator-{i}.r1-bigfleet-coordinator-headless.{namespace}.svc:7790"
        for i in range(3)
    )
    assert f"bigfleet ctl --coordinator {replicas} list-shards" in notes
    assert f"r1-bigfleet-shard-0.r1-bigfleet-shard.{namespace}.svc:7780" in notes
    embedded = helm.notes(
        BIGFLEET, {**PROVIDERS, "coordinator": {"store": "embedded"}}, namespace, kubeconfig
    )
    assert "embedded store, one replica" in embedded
    only = f"r1-bigfleet-coordinator-0.r1-bigfleet-coordinator-headless.{namespace}.svc:7790"
    assert f"--coordinator {only} list-shards" in embedded

    operator = helm.notes(OPERATOR, OPERATOR_REQUIRED, namespace, kubeconfig)
    assert 'for cluster "prod-eu-1"' in operator and "kubectl get upcomingnodes" in operator
    assert "apiServerURL is empty" in operator
    with_url = {**OPERATOR_REQUIRED, "apiServerURL": "https://api.example:6443"}
    assert "apiServerURL is empty" not in helm.notes(OPERATOR, with_url, namespace, kubeconfig)

    controller = helm.notes(POD_CONTROLLER, {}, namespace, kubeconfig)
    assert "kubectl get capacityrequests -A -l bigfleet.lucy.sh/owned-by-pod" in controller
    # Each names its `helm test`, unless it serves nothing to ask.
    for printed in (notes, operator, controller):
        assert f"helm test r1 -n {namespace} --logs" in printed
    quiet = helm.notes(OPERATOR, {**OPERATOR_REQUIRED, "metricsPort": 0}, namespace, kubeconfig)
    assert "helm test" not in quiet


def test_install_notes_say_how_tls_is_configured(
    helm: Helm, control_plane: LocalControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig_path
    plain = helm.notes(BIGFLEET, PROVIDERS, namespace, kubeconfig)
    assert "TLS is off: every gRPC edge is plaintext" in plain
    secrets = helm.notes(BIGFLEET, TLS_SECRETS, namespace, kubeconfig)
    assert "Mutual TLS is on" in secrets
    assert "bigfleet://admin (Secret fleet-admin)" in secrets
    assert "(Secrets fleet-shard-a, fleet-shard-b, fleet-shard-c)" in secrets
    assert "The bundled etcd serves TLS (Secret fleet-etcd)" in secrets
    # ctl run in a coordinator pod uses the replica's own admin certificate.
    assert (
        f"bigfleet ctl --tls-cert {TLS_DIR}/tls.crt --tls-key {TLS_DIR}/tls.key "
        f"--tls-ca {TLS_DIR}/ca.crt"
    ) in secrets
    # (Not with cert-manager: helm install --dry-run maps every object to the API server,
    # which has no Certificate kind.)
    policies = helm.notes(
        BIGFLEET, {**PROVIDERS, "networkPolicy": {"enabled": True}}, namespace, kubeconfig
    )
    assert "NetworkPolicies admit: the shards' gRPC port from anywhere" in policies

    operator = helm.notes(OPERATOR, OPERATOR_REQUIRED, namespace, kubeconfig)
    assert "TLS is off: the operator dials the shard in plaintext" in operator
    operator_tls = helm.notes(
        OPERATOR,
        {**OPERATOR_REQUIRED, "tls": {"secretName": "prod-eu-1-tls"}},
        namespace,
        kubeconfig,
    )
    assert "presents bigfleet://cluster/prod-eu-1 from\nSecret prod-eu-1-tls," in operator_tls


# -- what runs in the pods ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "values"),
    [
        (BIGFLEET, PROVIDERS),
        (BIGFLEET, {**PROVIDERS, "coordinator": {"store": "embedded", "mirrorShardStatus": True}}),
        (
            BIGFLEET,
            {
                "fakeProvider": {"enabled": True},
                "shard": {
                    "clusters": ["a", "b"],
                    "pauseAcquisitions": True,
                    "pauseReclaims": True,
                    "dryRun": True,
                    "incrementalReconcile": True,
                    "emptyRollupGuard": False,
                    "cycleIntervalSeconds": 2.5,
                },
                "etcd": {"external": {"endpoints": ["etcd.db.svc:2379"]}},
                "logLevel": "debug",
            },
        ),
        (
            OPERATOR,
            {
                **OPERATOR_REQUIRED,
                "bootstrapTemplate": JOIN_TEMPLATE,
                "apiServerURL": "https://a:6443",
            },
        ),
        (OPERATOR, {**OPERATOR_REQUIRED, "metricsPort": 0}),
        (POD_CONTROLLER, {"priorityClassDefaults": {"critical": {"reclamationPenalty": "1"}}}),
        (BIGFLEET, TLS_SECRETS),
        (BIGFLEET, {**PROVIDERS, **CERT_MANAGER, "coordinator": {"store": "embedded"}}),
        (OPERATOR, {**OPERATOR_REQUIRED, **CERT_MANAGER, "bootstrapTemplate": JOIN_TEMPLATE}),
    ],
    ids=[
        "bigfleet",
        "bigfleet-embedded-mirror",
        "bigfleet-switches",
        "operator",
        "operator-quiet",
        "upc",
        "bigfleet-tls",
        "bigfleet-cert-manager-embedded",
        "operator-tls",
    ],
)
def test_every_bigfleet_container_has_arguments_the_cli_accepts(
    helm: Helm, chart: Path, values: Manifest, tmp_path: Path
) -> None:
    rendered = helm.render(chart, values)
    checked = 0
    for workload in rendered.of("StatefulSet") + rendered.of("Deployment"):
        for name, container in containers(workload).items():
            if "command" in container:
                continue  # etcd, and the shell that writes the kubeconfig
            assert container["image"] == "bigfleet:0.1.0"
            mounts = materialize_mounts(rendered, workload, name, tmp_path / name)
            args = expand_env(workload, name, container["args"])
            parse_cli(localize(args, mounts))
            # TLS everywhere or nowhere; the pod controller dials nothing.
            expect_tls = chart != POD_CONTROLLER and (
                "tls" in values or "tls" in values.get("coordinator", {})
            )
            assert bool(tls_flags(args)) == expect_tls, (workload["metadata"]["name"], args)
            checked += 1
    assert checked >= 1


def test_shard_switches_become_flags(helm: Helm) -> None:
    values = {
        "shard": {
            **PROVIDERS["shard"],
            "clusters": ["a", "b"],
            "pauseAcquisitions": True,
            "pauseReclaims": True,
            "dryRun": True,
            "incrementalReconcile": True,
            "emptyRollupGuard": False,
            "maxActionsPerCycle": 40,
        }
    }
    args = args_of(helm.render(BIGFLEET, values).get("StatefulSet", "-shard"), "shard")
    for switch in (
        "--pause-acquisitions",
        "--pause-reclaims",
        "--dry-run",
        "--incremental-reconcile",
        "--no-empty-rollup-guard",
    ):
        assert switch in args
    assert [a for a in args if a.startswith("--cluster=")] == ["--cluster=a", "--cluster=b"]
    assert flag(args, "--max-actions-per-cycle") == "40"
    defaults = args_of(helm.render(BIGFLEET, PROVIDERS).get("StatefulSet", "-shard"), "shard")
    assert "--empty-rollup-guard" in defaults
    assert not {"--pause-acquisitions", "--pause-reclaims", "--dry-run"} & set(defaults)


def test_cli_parsing_catches_a_misspelt_flag() -> None:
    parse_cli(["--log-level=info", "shard", "--provider=a=b:1", "--cycle-interval=1"])
    with pytest.raises(click.UsageError):
        parse_cli(["--log-level=info", "shard", "--provider=a=b:1", "--cycle-intervall=1"])
    with pytest.raises(click.BadParameter):
        parse_cli(["coordinator", "--etcd=no-port"])


# -- RBAC as the pods get it --------------------------------------------------------------

ALL = "*"
HERE = "(the release namespace)"


def _component_cases() -> list[Any]:
    mirror = {**PROVIDERS, "coordinator": {"mirrorShardStatus": True}}
    operator_can = [
        ("list", "capacityrequests.bigfleet.lucy.sh", "", ALL, True),
        ("watch", "capacityrequests.bigfleet.lucy.sh", "", ALL, True),
        ("patch", "capacityrequests.bigfleet.lucy.sh", "status", ALL, True),
        ("delete", "capacityrequests.bigfleet.lucy.sh", "", ALL, False),
        ("create", "upcomingnodes.bigfleet.lucy.sh", "", None, True),
        ("delete", "upcomingnodes.bigfleet.lucy.sh", "", None, True),
        ("patch", "upcomingnodes.bigfleet.lucy.sh", "status", None, True),
        ("patch", "availablecapacities.bigfleet.lucy.sh", "", None, True),
        ("patch", "nodes", "", None, True),
        ("delete", "nodes", "", None, True),  # the Node of a machine drained back to Idle
        ("list", "pods", "", ALL, True),
        ("delete", "pods", "", ALL, False),
        ("create", "pods", "eviction", "default", True),
        ("create", "secrets", "", "kube-system", True),
        ("get", "secrets", "", "kube-system", False),
        ("create", "secrets", "", "default", False),
        ("create", "events", "", "default", True),
        ("patch", "events", "", "default", True),  # a repeated Event counts up
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", "", None, True),
        ("create", "shards.bigfleet.lucy.sh", "", None, False),
        ("update", "leases.coordination.k8s.io", "", HERE, True),  # leader election
        ("create", "leases.coordination.k8s.io", "", HERE, True),
        ("update", "leases.coordination.k8s.io", "", "kube-system", False),
    ]
    shard_can = [
        ("create", "shards.bigfleet.lucy.sh", "", None, True),
        ("watch", "shards.bigfleet.lucy.sh", "", None, True),
        ("patch", "shards.bigfleet.lucy.sh", "", None, True),
        ("patch", "shards.bigfleet.lucy.sh", "status", None, True),
        ("delete", "shards.bigfleet.lucy.sh", "", None, False),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", "", None, True),
        ("list", "capacityrequests.bigfleet.lucy.sh", "", ALL, False),
        ("get", "secrets", "", "default", False),
    ]
    coordinator_can = [
        ("create", "shards.bigfleet.lucy.sh", "", None, True),
        ("list", "shards.bigfleet.lucy.sh", "", None, True),
        ("patch", "shards.bigfleet.lucy.sh", "status", None, True),
        ("patch", "shards.bigfleet.lucy.sh", "", None, False),  # status only
        ("delete", "shards.bigfleet.lucy.sh", "", None, False),
    ]
    pod_controller_can = [
        ("watch", "pods", "", ALL, True),
        ("create", "capacityrequests.bigfleet.lucy.sh", "", ALL, True),
        ("delete", "capacityrequests.bigfleet.lucy.sh", "", ALL, True),
        ("patch", "capacityrequests.bigfleet.lucy.sh", "status", ALL, True),
        ("get", "capacityrequests.bigfleet.lucy.sh", "", ALL, True),
        ("watch", "events", "", ALL, True),
        ("create", "events", "", "default", True),
        ("patch", "events", "", "default", True),
        ("delete", "events", "", "default", False),
        ("delete", "pods", "", ALL, False),
        ("patch", "nodes", "", None, False),
        ("create", "secrets", "", "kube-system", False),
        ("update", "leases.coordination.k8s.io", "", HERE, True),  # leader election
        ("delete", "leases.coordination.k8s.io", "", HERE, False),
    ]
    return [
        pytest.param(
            OPERATOR,
            OPERATOR_REQUIRED,
            "Deployment",
            "operator",
            "capacityrequests",
            operator_can,
            id="operator",
        ),
        pytest.param(BIGFLEET, mirror, "StatefulSet", "-shard", "shards", shard_can, id="shard"),
        pytest.param(
            BIGFLEET,
            mirror,
            "StatefulSet",
            "-coordinator",
            "shards",
            coordinator_can,
            id="coordinator",
        ),
        pytest.param(
            POD_CONTROLLER,
            {},
            "Deployment",
            "controller",
            "pods",
            pod_controller_can,
            id="pod-controller",
        ),
    ]


def _kubectl_as(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_binaries() / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _service_account_credentials(
    control_plane: LocalControlPlane, pod: Manifest, namespace: str, tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """What a pod of a chart that logs in as its service account gets: the token the
    kubelet projects (a TokenRequest, as `kubectl create token` makes) and the cluster's
    CA, written as the kubeconfig the clients would build from them in the pod."""
    assert pod["automountServiceAccountToken"] is True
    assert not any(v.get("secret", {}).get("secretName", "").endswith("-token")
                   for v in pod.get("volumes", []))  # no long-lived token Secret  # fmt: skip
    sa = pod["serviceAccountName"]
    issued = control_plane.kubectl("create", "token", sa, "-n", namespace).stdout.strip()
    ca = control_plane.pki.ca_cert.read_text()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.touch(mode=0o600)
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "in-cluster", "cluster": {
                    "server": control_plane.apiserver_url,
                    "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                }}],
                "users": [{"name": "sa", "user": {"token": issued}}],
                "contexts": [{"name": "in-cluster",
                              "context": {"cluster": "in-cluster", "user": "sa"}}],
                "current-context": "in-cluster",
            }
        )
    )  # fmt: skip
    return kubeconfig, {"token": issued, "ca.crt": ca}


@pytest.mark.parametrize(
    ("chart", "values", "kind", "suffix", "listable", "checks"), _component_cases()
)
async def test_component_rbac_grants_what_its_code_does_and_no_more(
    helm: Helm,
    controller_manager: LocalControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chart: Path,
    values: Manifest,
    kind: str,
    suffix: str,
    listable: str,
    checks: list[tuple[str, str, str, str | None, bool]],
) -> None:
    control_plane = controller_manager
    release = f"r{namespace[2:]}"
    rendered = helm.render(chart, values, namespace, release)
    control_plane.kubectl("apply", "--server-side", "-f", "-", stdin=rendered.only(RBAC_KINDS))

    workload = rendered.get(kind, suffix)
    pod = workload["spec"]["template"]["spec"]
    assert "kubeconfig" not in containers(workload)  # no init container writes one
    kubeconfig, token = _service_account_credentials(control_plane, pod, namespace, tmp_path)
    assert kubeconfig.stat().st_mode & 0o077 == 0  # the token is for the process alone

    sa = pod["serviceAccountName"]
    whoami = _kubectl_as(kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{namespace}:{sa}", whoami.stderr
    wrong = []
    for verb, resource, subresource, where, allowed in checks:
        args = ["auth", "can-i", verb, resource]
        if subresource:
            args.append(f"--subresource={subresource}")
        if where == ALL:
            args.append("--all-namespaces")
        elif where == HERE:
            args.append(f"--namespace={namespace}")
        elif where:
            args.append(f"--namespace={where}")
        answer = _kubectl_as(kubeconfig, *args).stdout.strip()
        if answer != ("yes" if allowed else "no"):
            wrong.append(f"{' '.join(args[2:])}: {answer}")
    assert not wrong, wrong

    # The clients in the image accept the file: kr8s lists, kopf logs in, and the
    # operator finds the API server and CA it writes into join blobs.
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    [o async for o in api.async_get(listable, namespace=kr8s.ALL)]  # raises when refused
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    login = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert login is not None and login.token == token["token"]
    assert login.server == control_plane.apiserver_url
    assert _connection(api) == (control_plane.apiserver_url, token["ca.crt"])
    if chart == OPERATOR:
        # Join tokens carry the group the chart binds: they may ask for, and get, a
        # kubelet certificate.
        for subresource in ("", "nodeclient"):
            can = control_plane.kubectl(
                "auth", "can-i", "create", "certificatesigningrequests.certificates.k8s.io",
                *([f"--subresource={subresource}"] if subresource else []),
                "--as=system:bootstrap:abcdef", f"--as-group={BOOTSTRAP_GROUP}",
                check=False,
            )  # fmt: skip
            assert can.stdout.strip() == "yes", subresource


# -- what CI runs on every chart: ci/ values, defaults, test hooks, packages -------------

COMPONENT_CHARTS = (BIGFLEET, OPERATOR, POD_CONTROLLER)
HOOK = "helm.sh/hook"
HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"


def ci_values_files() -> list[Any]:
    return [
        pytest.param(chart, values, id=f"{chart.name}/{values.name}")
        for chart in EVERY_CHART
        for values in sorted((chart / "ci").glob("*-values.yaml"))
    ]


def test_every_chart_under_charts_is_covered_and_has_ci_values() -> None:
    assert {p.parent for p in CHARTS.glob("*/Chart.yaml")} == set(EVERY_CHART)
    for chart in EVERY_CHART:
        assert list((chart / "ci").glob("*-values.yaml")), chart.name


@pytest.mark.parametrize(("chart", "values"), ci_values_files())
def test_ci_values_pass_strict_lint_and_the_api_server_takes_the_render(
    helm: Helm, control_plane: LocalControlPlane, namespace: str, chart: Path, values: Path
) -> None:
    lint = helm.run("lint", "--strict", str(chart), "--values", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 chart(s) failed" in lint.stdout
    rendered = helm.render(chart, yaml.safe_load(values.read_text()), namespace)
    assert rendered.docs
    if chart == CRDS_CHART:
        return  # cluster-scoped CRDs that exist already: test_crd_chart_* apply them
    # The operator may create Secrets in kube-system only, through a Role there.
    assert_namespaced(rendered, namespace, frozenset({"r1-bigfleet-operator-bootstrap-tokens"}))
    assert_applied(dry_run(control_plane, rendered.text), rendered)


@pytest.mark.parametrize(
    ("chart", "complaints"),
    [
        (BIGFLEET, ["shard.providers: name at least one capacity provider"]),
        (OPERATOR, ["'/clusterID'", "'/shardAddress'"]),
        (POD_CONTROLLER, []),
        (CRDS_CHART, []),
    ],
    ids=["bigfleet", "operator", "upc", "crds"],
)
def test_default_values_render_or_name_the_value_that_is_missing(
    helm: Helm, chart: Path, complaints: list[str]
) -> None:
    result = helm.run("template", "r1", str(chart), "--kube-version", KUBE_VERSION)
    if not complaints:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    for complaint in complaints:
        assert complaint in result.stderr, result.stderr


def helm_test_pod(rendered: Rendered) -> Manifest:
    hooks = [d for d in rendered.docs if HOOK in d["metadata"].get("annotations", {})]
    assert len(hooks) == 1, [h["metadata"]["name"] for h in hooks]
    return hooks[0]


def hook_urls(hook: Manifest) -> list[str]:
    [container] = hook["spec"]["containers"]
    return list(container["args"][1:])


@pytest.mark.parametrize(
    ("chart", "values", "expected_urls"),
    [
        (
            BIGFLEET,
            PROVIDERS,
            [
                *(
                    f"r1-bigfleet-coordinator-{i}.r1-bigfleet-coordinator-headless.{{ns}}.svc:8790"
                    f"/readyz"
                    for i in range(3)
                ),
                "r1-bigfleet-shard-0.r1-bigfleet-shard.{ns}.svc:8780/readyz",
            ],
        ),
        (
            BIGFLEET,
            {
                "coordinator": {"store": "embedded"},
                "fakeProvider": {"enabled": True},
                "shard": {"replicas": 2},
            },
            [
                "r1-bigfleet-coordinator-0.r1-bigfleet-coordinator-headless.{ns}.svc:8790/readyz",
                "r1-bigfleet-shard-0.r1-bigfleet-shard.{ns}.svc:8780/readyz",
                "r1-bigfleet-shard-1.r1-bigfleet-shard.{ns}.svc:8780/readyz",
            ],
        ),
        (OPERATOR, OPERATOR_REQUIRED, ["r1-bigfleet-operator-metrics.{ns}.svc:8770/readyz"]),
        (
            POD_CONTROLLER,
            {},
            ["r1-bigfleet-unschedulable-pod-controller-metrics.{ns}.svc:8080/metrics"],
        ),
    ],
    ids=["bigfleet", "bigfleet-embedded", "operator", "upc"],
)
def test_each_component_chart_has_a_test_hook_that_asks_every_replica(
    helm: Helm,
    control_plane: LocalControlPlane,
    namespace: str,
    chart: Path,
    values: Manifest,
    expected_urls: list[str],
) -> None:
    rendered = helm.render(chart, values, namespace)
    hook = helm_test_pod(rendered)
    assert hook["kind"] == "Pod"
    annotations = hook["metadata"]["annotations"]
    assert annotations[HOOK] == "test"
    # A rerun replaces the last pod, and a pod that passed does not linger.
    assert set(annotations[HOOK_DELETE_POLICY].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    assert hook["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    spec = hook["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    # Locked down like the chart's other pods, running the same image.
    chart_values = yaml.safe_load((chart / "values.yaml").read_text())
    assert spec["securityContext"] == chart_values["podSecurityContext"]
    [container] = spec["containers"]
    assert container["securityContext"] == chart_values["securityContext"]
    workloads = rendered.of("StatefulSet") + rendered.of("Deployment")
    images = {c["image"] for w in workloads for c in containers(w).values() if "command" not in c}
    assert {container["image"]} == images
    assert container["command"] == ["python", "-c"]
    assert hook_urls(hook) == [f"http://{u.format(ns=namespace)}" for u in expected_urls]
    # Every URL names a rendered Service and a metrics port it serves.
    for url in hook_urls(hook):
        host, _, port = url.removeprefix("http://").split("/")[0].partition(":")
        service_name = host.split(".")[-3]  # <pod>.<service>.<ns>.svc or <service>.<ns>.svc
        ports = rendered.get("Service", service_name)["spec"]["ports"]
        assert {"name": "metrics", "port": int(port), "targetPort": "metrics"} in ports
    # The API server takes the pod as it stands.
    hook_only = Rendered(yaml.safe_dump(hook))
    assert_applied(dry_run(control_plane, hook_only.text), hook_only)


def test_no_test_hook_without_a_metrics_port(helm: Helm) -> None:
    quiet = helm.render(OPERATOR, {**OPERATOR_REQUIRED, "metricsPort": 0})
    assert "Pod" not in quiet.kinds() and not quiet.of("Service")
    assert "Pod" not in helm.render(POD_CONTROLLER, {"metricsPort": 0}).kinds()


async def _run_hook(script: str, *urls: str) -> tuple[int, str, str]:
    """Run the hook's check as the pod does: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        "python",
        "-c",
        script,
        *urls,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": str(Path(sys.executable).parent)},  # `python` as in the image: the venv's
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_hook_passes_on_200_and_fails_naming_the_503_reason(helm: Helm) -> None:
    scripts = {
        chart.name: helm_test_pod(helm.render(chart, values))["spec"]["containers"][0]["args"][0]
        for chart, values in (
            (BIGFLEET, PROVIDERS),
            (OPERATOR, OPERATOR_REQUIRED),
            (POD_CONTROLLER, {}),
        )
    }
    assert len(set(scripts.values())) == 1, "the three charts run one check"
    script = scripts[BIGFLEET.name]
    ready = {"now": True}
    registry = CollectorRegistry()
    runner = await probes.start(
        "127.0.0.1", 0, registry, lambda: ready["now"], "no session to the shard"
    )
    try:
        [address] = runner.addresses
        base = f"http://127.0.0.1:{address[1]}"
        code, out, err = await _run_hook(script, f"{base}/readyz", f"{base}/metrics")
        assert (code, err) == (0, ""), err
        assert out.splitlines() == [f"{base}/readyz 200", f"{base}/metrics 200"]
        ready["now"] = False
        code, out, err = await _run_hook(script, f"{base}/metrics", f"{base}/readyz")
        assert code == 1
        assert out.splitlines() == [f"{base}/metrics 200"]
        [failure] = err.splitlines()  # only the URL that failed, with the component's reason
        assert failure.startswith(f"{base}/readyz: HTTP Error 503")
        assert failure.endswith("no session to the shard")
    finally:
        await runner.cleanup()
    # Nothing listening any more: refused, and named.
    code, out, err = await _run_hook(script, f"{base}/readyz")
    assert code == 1 and err.startswith(f"{base}/readyz: <urlopen error"), err


@pytest.mark.parametrize("chart", EVERY_CHART, ids=[c.name for c in EVERY_CHART])
def test_every_chart_packages_and_the_package_renders_as_the_folder_does(
    helm: Helm, chart: Path, tmp_path: Path
) -> None:
    packaged = helm.run("package", str(chart), "--destination", str(tmp_path))
    assert packaged.returncode == 0, packaged.stderr
    archive = tmp_path / f"{chart.name}-0.1.0.tgz"
    assert archive.is_file(), packaged.stdout
    for values in sorted((chart / "ci").glob("*-values.yaml")):
        common = ("--kube-version", KUBE_VERSION, "--values", str(values))
        from_folder = helm.run("template", "r1", str(chart), *common)
        from_archive = helm.run("template", "r1", str(archive), *common)
        assert from_folder.returncode == 0 and from_archive.returncode == 0, from_archive.stderr
        assert from_archive.stdout == from_folder.stdout, values.name
        lint = helm.run("lint", "--strict", str(archive), "--values", str(values))
        assert lint.returncode == 0, lint.stdout + lint.stderr


# -- the CRD chart ------------------------------------------------------------------------


def crd_names(rendered: Rendered) -> set[str]:
    return {d["metadata"]["name"] for d in rendered.of("CustomResourceDefinition")}


def test_crd_chart_renders_the_repository_crds_with_only_labels_and_keep_added(
    helm: Helm,
) -> None:
    repository = {
        crd["metadata"]["name"]: crd
        for crd in (yaml.safe_load(p.read_text()) for p in crd_dir().glob("*.yaml"))
    }
    rendered = helm.render(CRDS_CHART, {})
    assert rendered.kinds() == {"CustomResourceDefinition"}
    assert crd_names(rendered) == set(repository)
    for crd in rendered.docs:
        meta = crd["metadata"]
        assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}
        labels = meta.pop("labels")
        assert labels["app.kubernetes.io/instance"] == "r1"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert crd == repository[meta["name"]]  # nothing else differs, not even a scalar
    # The text itself: each file byte for byte, but for the lines added under metadata.
    files = {p.read_text() for p in crd_dir().glob("*.yaml")}
    for chunk in rendered.text.split("---\n# Source: bigfleet-crds/templates/crds.yaml\n")[1:]:
        head, _, rest = chunk.partition("\nmetadata:\n")
        added, _, tail = rest.partition("  name: ")
        assert added.startswith("  labels:\n") and "helm.sh/resource-policy: keep" in added
        assert f"{head}\nmetadata:\n  name: {tail}".rstrip("\n") + "\n" in files

    unkept = helm.render(CRDS_CHART, {"keep": False})
    assert all("annotations" not in d["metadata"] for d in unkept.docs)
    management = helm.render(CRDS_CHART, {"managed": False})
    assert crd_names(management) == {"shards.bigfleet.lucy.sh"}
    managed = helm.render(CRDS_CHART, {"management": False})
    assert crd_names(managed) == set(repository) - {"shards.bigfleet.lucy.sh"}
    neither = helm.template(CRDS_CHART, {"management": False, "managed": False})
    assert neither.returncode != 0
    assert "management and managed are both false" in neither.stderr
    assert "'kep' not allowed" in helm.template(CRDS_CHART, {"kep": True}).stderr


def _crd(control_plane: LocalControlPlane, name: str) -> Manifest:
    out = control_plane.kubectl("get", "crd", name, "-o", "json").stdout
    result: Manifest = json.loads(out)
    return result


def _shard_ready_column(crd: Manifest) -> str:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return str(next(c["description"] for c in columns if c["name"] == "Ready"))


def test_crd_chart_adopts_upgrades_and_keeps_the_crds(
    helm: Helm, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The documented path on a real API server whose CRDs were applied without Helm."""
    kubeconfig = str(control_plane.kubeconfig_path)
    release = f"crds-{namespace[2:]}"
    names = sorted(crd_names(helm.render(CRDS_CHART, {})))

    def helm_on_cluster(*args: str) -> subprocess.CompletedProcess[str]:
        return helm.run(*args, "--namespace", namespace, "--kubeconfig", kubeconfig)

    # CRDs that Helm does not own are refused, never silently taken over.
    refused = helm_on_cluster("install", release, str(CRDS_CHART))
    assert refused.returncode != 0
    assert "exists and cannot be imported into the current release" in refused.stderr
    # Adopt them as charts/README.md says, then install.
    crds = [f"crd/{name}" for name in names]
    control_plane.kubectl("label", "--overwrite", *crds, "app.kubernetes.io/managed-by=Helm")
    control_plane.kubectl(
        "annotate", "--overwrite", *crds,
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    installed = helm_on_cluster("install", release, str(CRDS_CHART))
    assert installed.returncode == 0, installed.stderr
    shard_crd = _crd(control_plane, "shards.bigfleet.lucy.sh")
    original = _shard_ready_column(shard_crd)
    assert shard_crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # A newer chart whose Shard CRD changed: `helm upgrade` brings the change.
    newer = tmp_path / "bigfleet-crds"
    subprocess.run(["cp", "-r", str(CRDS_CHART), str(newer)], check=True)
    shard_file = newer / "files" / "bigfleet.lucy.sh_shards.yaml"
    shard_file.write_text(shard_file.read_text().replace(original, f"{original} (newer)"))
    upgraded = helm_on_cluster("upgrade", release, str(newer))
    assert upgraded.returncode == 0, upgraded.stderr
    assert _shard_ready_column(_crd(control_plane, "shards.bigfleet.lucy.sh")) == (
        f"{original} (newer)"
    )
    back = helm_on_cluster("upgrade", release, str(CRDS_CHART))
    assert back.returncode == 0, back.stderr
    assert _shard_ready_column(_crd(control_plane, "shards.bigfleet.lucy.sh")) == original

    # Uninstalling the release keeps every CRD (and so every object of their kinds).
    removed = helm_on_cluster("uninstall", release)
    assert removed.returncode == 0, removed.stderr
    assert "kept due to the resource policy" in removed.stdout
    for name in names:
        assert _crd(control_plane, name)["metadata"]["name"] == name
