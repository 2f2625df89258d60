"""The developer-loop files agree with the code: kind configs, skaffold.yaml, the Grafana
dashboard's metric names, and an e2e tier that skips cleanly where Docker is missing."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from bigfleet.cli import main as cli
from e2e import fleet

ROOT = Path(__file__).resolve().parents[2]
KIND_CLUSTERS = ("management", "managed-a", "managed-b")
DASHBOARD = ROOT / "dashboards" / "bigfleet.json"
METRIC_PACKAGES = ("bigfleet", "shard", "coordinator", "operators", "providers_fake")
CONSTRUCTORS = {"Counter", "Gauge", "Histogram", "Summary"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- the metric catalog, read from the source --------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # Counter, Gauge, Histogram or Summary
    labels: tuple[str, ...]
    where: str

    def series(self) -> dict[str, set[str]]:
        """The series names Prometheus scrapes for it, each with its label names."""
        labels = set(self.labels)
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return {f"{base}_total": labels, f"{base}_created": labels}
        if self.kind == "Gauge":
            return {self.name: labels}
        extra = "le" if self.kind == "Histogram" else "quantile"
        series = {f"{self.name}_{s}": labels for s in ("sum", "count", "created")}
        series[f"{self.name}_bucket" if self.kind == "Histogram" else self.name] = labels | {extra}
        return series


def _strings(node: ast.AST, names: Mapping[str, str]) -> str | None:
    """A string expression built from literals, names bound to literals, and `+`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _strings(node.left, names), _strings(node.right, names)
        return None if left is None or right is None else left + right
    return None


def _bound_strings(scope: ast.AST) -> dict[str, str]:
    """Names a scope binds to string literals: `p = "x_"` and `p, r = "x_", registry`."""
    names: dict[str, str] = {}
    for node in ast.walk(scope):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        pairs = (
            zip(target.elts, value.elts, strict=False)
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
            else [(target, value)]
        )
        for name, literal in pairs:
            if isinstance(name, ast.Name):
                text = _strings(literal, names)
                if text is not None:
                    names[name.id] = text
    return names


def metrics_in(path: Path, source: str) -> Iterator[Metric]:
    """Every prometheus_client metric constructed in a module, with its name and labels."""
    tree = ast.parse(source)
    local = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
        for alias in node.names
        if alias.name in CONSTRUCTORS
    }
    if not local:
        return
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    seen: set[int] = set()
    for scope in [*scopes, tree]:
        names = _bound_strings(scope)
        for call in ast.walk(scope):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id in local
                and call.lineno not in seen
            ):
                continue
            seen.add(call.lineno)
            where = f"{path}:{call.lineno}"
            keywords = {k.arg: k.value for k in call.keywords if k.arg}
            name_node = call.args[0] if call.args else keywords.get("name")
            name = _strings(name_node, names) if name_node is not None else None
            assert name, f"{where}: cannot read this metric's name from the source"
            labels_node = call.args[2] if len(call.args) > 2 else keywords.get("labelnames")
            labels: tuple[str, ...] = ()
            if labels_node is not None:
                assert isinstance(labels_node, ast.List | ast.Tuple), f"{where}: label names"
                labels = tuple(_strings(e, names) or "" for e in labels_node.elts)
                assert all(labels), f"{where}: cannot read this metric's label names"
            yield Metric(name=name, kind=local[call.func.id], labels=labels, where=where)


@cache
def catalog() -> dict[str, Metric]:
    found: dict[str, Metric] = {}
    for package in METRIC_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "v1alpha1" in path.parts:
                continue  # generated wire code
            for metric in metrics_in(path.relative_to(ROOT), path.read_text()):
                assert metric.name not in found, f"{metric.name} defined twice"
                found[metric.name] = metric
    return found


@cache
def exported_series() -> dict[str, set[str]]:
    return {s: labels for m in catalog().values() for s, labels in m.series().items()}


def test_the_catalog_reads_names_built_from_a_prefix_and_knows_each_kinds_series() -> None:
    source = (
        "from prometheus_client import Counter, Histogram\n"
        "def build(r):\n"
        "    p, q = 'demo_', r\n"
        "    Counter(p + 'hits_total', 'h', ['kind'], registry=q)\n"
        "    Histogram(name=p + 'wait_seconds', documentation='w', labelnames=('phase',))\n"
    )
    found = {m.name: m for m in metrics_in(Path("demo.py"), source)}
    assert set(found) == {"demo_hits_total", "demo_wait_seconds"}
    assert found["demo_hits_total"].series() == {
        "demo_hits_total": {"kind"},
        "demo_hits_created": {"kind"},
    }
    wait = found["demo_wait_seconds"].series()
    assert wait["demo_wait_seconds_bucket"] == {"phase", "le"}
    assert "demo_wait_seconds" not in wait  # a histogram's bare name is no series


def test_the_catalog_covers_every_component() -> None:
    names = set(catalog())
    assert "bigfleet_shard_cycle_duration_seconds" in names
    assert "bigfleet_coordinator_raft_term" in names
    assert "bigfleet_operator_rollup_duration_seconds" in names
    assert "bigfleet_unschedulable_pod_controller_reconciles_total" in names
    assert len(names) >= 40


# -- the dashboard ----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def expressions() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets") or []
    ]


METRIC_NAME = re.compile(r"\bbigfleet_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"\{([^}]*)\}")


def unknown_series(expr: str) -> list[str]:
    return [name for name in METRIC_NAME.findall(expr) if name not in exported_series()]


def unknown_labels(expr: str) -> list[str]:
    known = set(TARGET_LABELS)
    for name in METRIC_NAME.findall(expr):
        known |= exported_series().get(name, set())
    used = [label.strip() for group in GROUPING.findall(expr) for label in group.split(",")] + [
        re.split(r"[=!~]", m.strip())[0] for ms in MATCHER.findall(expr) for m in ms.split(",")
    ]
    return [label for label in used if label and label not in known]


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] == "bigfleet"
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${" + variable["name"] + "}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_series_the_dashboard_queries_is_exported_by_the_code() -> None:
    wrong = {f"{title}: {name}" for title, expr in expressions() for name in unknown_series(expr)}
    assert not wrong, f"the dashboard queries series nothing exports: {sorted(wrong)}"


def test_every_label_the_dashboard_groups_or_filters_by_belongs_to_its_metrics() -> None:
    wrong = {f"{title}: {label}" for title, expr in expressions() for label in unknown_labels(expr)}
    assert not wrong, f"labels the queried metrics do not carry: {sorted(wrong)}"


def test_the_checks_refuse_a_renamed_metric_a_bare_histogram_and_a_foreign_label() -> None:
    assert unknown_series("sum(rate(bigfleet_shard_actions_total[5m]))") == []
    assert unknown_series("sum(rate(bigfleet_shard_action_total[5m]))") == [
        "bigfleet_shard_action_total"
    ]
    assert unknown_series("sum(bigfleet_shard_cycle_duration_seconds)") == [
        "bigfleet_shard_cycle_duration_seconds"
    ]
    assert unknown_labels("sum by (kind) (rate(bigfleet_shard_actions_total[5m]))") == []
    assert unknown_labels('sum by (tier) (bigfleet_shard_actions_total{cluster="a"})') == [
        "tier",
        "cluster",
    ]


def test_the_dashboard_expressions_are_balanced() -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for title, expr in expressions():
        stack: list[str] = []
        for ch in re.sub(r'"[^"]*"', '""', expr):
            if ch in "([{":
                stack.append(ch)
            elif ch in pairs:
                assert stack and stack.pop() == pairs[ch], f"{title}: {expr}"
        assert not stack and expr.count('"') % 2 == 0, f"{title}: {expr}"


@pytest.mark.parametrize(
    "family",
    [
        "bigfleet_shard_cycle_duration_seconds_bucket",
        "bigfleet_shard_inventory_machines",
        "bigfleet_shard_shortfalls",
        "bigfleet_shard_shortfalls_aged",
        "bigfleet_shard_actions_total",
        "bigfleet_shard_action_execute_outcomes_total",
        "bigfleet_shard_provisioning_latency_seconds_bucket",
        "bigfleet_operator_rollup_duration_seconds_bucket",
        "bigfleet_operator_session_reconnects_total",
        "bigfleet_coordinator_raft_term",
        "bigfleet_coordinator_apply_total",
        "bigfleet_coordinator_pending_instructions",
        "bigfleet_coordinator_rebalance_moves_total",
        "bigfleet_coordinator_rebalance_seconds_bucket",
    ],
)
def test_the_dashboard_shows(family: str) -> None:
    assert any(family in METRIC_NAME.findall(expr) for _, expr in expressions())


# -- kind configs, the NodePort and up.sh ------------------------------------------------------


@pytest.mark.parametrize("name", KIND_CLUSTERS)
def test_kind_config_declares_a_named_cluster_with_a_control_plane(name: str) -> None:
    config = load_yaml(ROOT / "kind" / f"{name}.yaml")
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == f"bigfleet-{name}"
    assert [n["role"] for n in config["nodes"]].count("control-plane") == 1


def test_the_management_cluster_publishes_the_shard_nodeport() -> None:
    service = load_yaml(ROOT / "kind" / "shard-nodeport.yaml")
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    assert service["metadata"]["namespace"] == fleet.NAMESPACE
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == {
        "statefulset.kubernetes.io/pod-name": f"{fleet.SHARD_STATEFULSET}-0"
    }
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == int(_default(cli.commands["shard"], "listen").rpartition(":")[2])
    assert port["nodePort"] == fleet.SHARD_NODEPORT
    (node,) = load_yaml(ROOT / "kind" / "management.yaml")["nodes"]
    assert [m["containerPort"] for m in node["extraPortMappings"]] == [port["nodePort"]]


def test_up_script_is_valid_bash_and_creates_each_cluster() -> None:
    script = ROOT / "kind" / "up.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert all(name in text for name in KIND_CLUSTERS)
    assert "kind load docker-image" in text


def test_e2e_clusters_come_from_the_kind_configs_without_host_ports(tmp_path: Path) -> None:
    path = fleet.kind_config("management", fleet.cluster_name("management"), tmp_path)
    config = load_yaml(path)
    assert config["name"] == "bigfleet-e2e-management"
    assert all("extraPortMappings" not in node for node in config["nodes"])
    assert set(fleet.MANAGED.values()) == {"managed-a", "managed-b"}


# -- skaffold.yaml ----------------------------------------------------------------------------


def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(ROOT / "skaffold.yaml")
    return config


def _default(command: click.Command, param: str) -> Any:
    (found,) = [p for p in command.params if p.name == param]
    return found.default


def test_skaffold_builds_the_one_image_from_the_dockerfile() -> None:
    config = skaffold()
    assert (config["apiVersion"], config["kind"]) == ("skaffold/v4beta11", "Config")
    (artifact,) = config["build"]["artifacts"]
    assert artifact["image"] == "bigfleet"
    assert artifact["docker"]["dockerfile"] == "Dockerfile"
    assert config["build"]["local"]["push"] is False


def deployments() -> dict[str, dict[str, Any]]:
    """Deploy and port-forward sections: the default one and each profile's."""
    config = skaffold()
    found = {"management": {"deploy": config["deploy"], "portForward": config["portForward"]}}
    for profile in config["profiles"]:
        found[profile["name"]] = profile
    return found


def test_skaffold_deploys_each_tier_to_its_kind_cluster() -> None:
    found = deployments()
    assert set(found) == set(KIND_CLUSTERS)
    for cluster, section in found.items():
        assert section["deploy"]["kubeContext"] == f"kind-bigfleet-{cluster}"
        releases = {r["name"]: r for r in section["deploy"]["helm"]["releases"]}
        expected = (
            {"bigfleet"}
            if cluster == "management"
            else {"bigfleet-operator", "bigfleet-pod-controller"}
        )
        assert set(releases) == expected
        for release in releases.values():
            chart = release["chartPath"].removeprefix("charts/")
            assert fleet.RELEASES[chart] == release["name"]
            assert release["namespace"] == fleet.NAMESPACE
            templates = release["setValueTemplates"]
            assert templates["image.repository"] == "{{.IMAGE_REPO_bigfleet}}"
            assert templates["image.tag"] == "{{.IMAGE_TAG_bigfleet}}"
        if cluster != "management":
            operator = releases["bigfleet-operator"]
            assert operator["setValues"]["clusterID"] == cluster
            assert operator["setValueTemplates"]["shardAddress"] == "{{.BIGFLEET_SHARD_ADDRESS}}"


def test_skaffold_hooks_apply_the_crds_and_the_nodeport_that_exist() -> None:
    hooks = skaffold()["deploy"]["helm"]["hooks"]
    commands = [h["host"]["command"] for phase in ("before", "after") for h in hooks[phase]]
    files = [arg for command in commands for arg in command if "/" in arg]
    assert files == ["crds/", "kind/shard-nodeport.yaml"]
    assert all((ROOT / f).exists() for f in files)
    assert all("kind-bigfleet-management" in command for command in commands)


def test_skaffold_forwards_the_ports_the_binaries_listen_on() -> None:
    shard, coordinator, operator = (cli.commands[c] for c in ("shard", "coordinator", "operator"))
    forwards = {
        name: {(f["resourceName"], f["port"]) for f in section["portForward"]}
        for name, section in deployments().items()
    }
    shard_grpc = int(_default(shard, "listen").rpartition(":")[2])
    assert forwards["management"] == {
        (fleet.SHARD_STATEFULSET, shard_grpc),
        (fleet.SHARD_STATEFULSET, _default(shard, "metrics_port")),
        ("bigfleet-coordinator", _default(coordinator, "metrics_port")),
    }
    assert {shard_grpc, 8780, 8790} == {port for _, port in forwards["management"]}
    for cluster in ("managed-a", "managed-b"):
        assert forwards[cluster] == {("bigfleet-operator", _default(operator, "metrics_port"))}
    assert _default(operator, "metrics_port") == 8770


# -- chart values used by skaffold and e2e -----------------------------------------------------


def _values_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for section in deployments().values():
        for release in section["deploy"]["helm"]["releases"]:
            chart = release["chartPath"].removeprefix("charts/")
            keys = {*release.get("setValues", {}), *release.get("setValueTemplates", {})}
            used.setdefault(chart, set()).update(keys)
    for chart, values in fleet.values_by_chart().items():
        used.setdefault(chart, set()).update(values)
    return used


def _resolves(values: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


@pytest.mark.parametrize("chart", sorted(fleet.RELEASES))
def test_every_value_set_on_a_chart_is_one_its_values_file_declares(chart: str) -> None:
    values_file = ROOT / "charts" / chart / "values.yaml"
    if not values_file.is_file():
        pytest.skip(f"charts/{chart} has no values.yaml yet")
    values = load_yaml(values_file) or {}
    missing = sorted(k for k in _values_used()[chart] if not _resolves(values, k))
    assert not missing, f"charts/{chart}/values.yaml lacks {missing}"


# -- the e2e tier skips cleanly without Docker -------------------------------------------------


def _run_e2e(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on e2e/ with a PATH holding no docker, kind or helm, whatever this machine has."""
    env = {**os.environ, "PATH": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "e2e", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _e2e_test_functions() -> set[str]:
    return {
        node.name
        for path in (ROOT / "e2e").glob("test_*.py")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_e2e_tests_are_collected_and_skip_with_the_reason_without_docker(tmp_path: Path) -> None:
    tests = _e2e_test_functions()
    assert len(tests) >= 3

    collected = _run_e2e(tmp_path, "--collect-only", "-q")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert {line.rpartition("::")[2] for line in collected.stdout.splitlines() if "::" in line} == (
        tests
    )

    ran = _run_e2e(tmp_path, "-q", "-rs")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{len(tests)} skipped" in ran.stdout, ran.stdout
    assert "no `docker` command on PATH" in ran.stdout
    for outcome in ("passed", "failed", "error"):
        assert f" {outcome}" not in ran.stdout.splitlines()[-1], ran.stdout
