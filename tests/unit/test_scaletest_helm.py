"""The helm substrate's files, without helm: what each values file says for every packaged
profile, the load it shares with the local substrate, the install script's order, and the
command line. tests/cluster/test_scaletest_helm.py renders the charts with them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bigfleet.cli import main
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.scaletest import helm_values, profile
from bigfleet.scaletest.load import manifests
from bigfleet.scaletest.profile import Profile

# Tools the install script calls, replaced by ones that write down their arguments.
RECORDER = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "$CALLS"\n'


def _documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _variant(name: str, **changes: object) -> Profile:
    data = profile.load(name).model_dump(mode="json", by_alias=True)
    return Profile.model_validate({**data, **changes})


@pytest.mark.parametrize("name", profile.available())
def test_every_packaged_profile_renders_its_topology(name: str, tmp_path: Path) -> None:
    loaded = profile.load(name)
    rendered = helm_values.render(loaded, tmp_path)
    assert {p.name for p in rendered.files} == {
        "bigfleet-values.yaml", "pod-controller-values.yaml", "load.yaml", "install.sh",
        "README.txt", *(f"operator-{c}-values.yaml" for c in loaded.cluster_names),
    }  # fmt: skip
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for p in rendered.files)

    (fleet,) = _documents(tmp_path / "bigfleet-values.yaml")
    assert fleet["shard"]["replicas"] == 1
    assert fleet["shard"]["cycleIntervalSeconds"] == loaded.cycle_interval_s
    fake = fleet["fakeProvider"]
    assert fake["enabled"] and fake["joinNodes"]
    assert (fake["idle"], fake["speculative"]) == (0, 0)  # every machine comes from the fleet
    assert FleetConfig.model_validate(fake["fleet"]) == loaded.fleet

    for cluster in loaded.cluster_names:
        (operator,) = _documents(tmp_path / f"operator-{cluster}-values.yaml")
        assert operator == {
            "clusterID": cluster,
            "shardAddress": helm_values.SHARD_ADDRESS,
            "rollupIntervalSeconds": loaded.rollup_interval_s,
        }
    assert _documents(tmp_path / "pod-controller-values.yaml") == [{"mode": "per-pod"}]

    load = _documents(tmp_path / "load.yaml")
    assert load == manifests(loaded)  # the local substrate's own builder, unchanged
    deployments = {d["metadata"]["name"]: d for d in load if d["kind"] == "Deployment"}
    expected = {
        name: w.replicas
        for w in loaded.workloads
        for name in ([f"{w.name}-g{i}" for i in range(w.gangs)] if w.gangs else [w.name])
    }
    assert {n: d["spec"]["replicas"] for n, d in deployments.items()} == expected
    assert sum(d["spec"]["replicas"] for d in deployments.values()) == loaded.pods_per_cluster
    assert load[0]["kind"] == "Namespace"  # before what lives in it
    assert "&" not in (tmp_path / "load.yaml").read_text()  # no anchors or aliases


@pytest.mark.parametrize(
    ("changes", "coordinator", "etcd"),
    [
        ({"coordinator": False}, {"enabled": False}, None),
        ({"coordinator": True, "coordinatorReplicas": 1}, {"store": "embedded"}, None),
        (
            {"coordinator": True, "coordinatorReplicas": 5},
            {"store": "etcd", "replicas": 5},
            {"replicas": 3},
        ),
    ],
)
def test_the_coordinator_follows_the_profile(
    changes: dict[str, object], coordinator: dict[str, object], etcd: object
) -> None:
    values = helm_values.fleet_values(_variant("smoke", **changes))
    assert values["coordinator"] == coordinator
    assert values.get("etcd") == etcd
    heartbeat = values["shard"].get("coordinatorHeartbeatIntervalSeconds")
    assert heartbeat == (1 if changes["coordinator"] else None)


def test_the_profiles_intervals_reach_the_values() -> None:
    varied = _variant("smoke", cycleInterval="2.5s", rollupInterval=0.75, clusters=3)
    assert helm_values.fleet_values(varied)["shard"]["cycleIntervalSeconds"] == 2.5
    assert [helm_values.operator_values(varied, c)["clusterID"] for c in varied.cluster_names] == [
        "c1", "c2", "c3"
    ]  # fmt: skip
    assert helm_values.operator_values(varied, "c3")["rollupIntervalSeconds"] == 0.75


def _run_install(out: Path, tmp_path: Path, *args: str, **env: str) -> list[str]:
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("helm", "kubectl"):
        (tools / tool).write_text(RECORDER)
        (tools / tool).chmod(0o755)
    charts = tmp_path / "charts"
    charts.mkdir()
    calls = tmp_path / "calls"
    ours = {"SHARD_ADDRESS", "MANAGEMENT", "C1", "C2"}  # the script's own variables
    inherited = {k: v for k, v in os.environ.items() if k not in ours}
    environment = {
        **inherited, "PATH": f"{tools}:{os.environ['PATH']}", "CALLS": str(calls),
        "CHARTS": str(charts), **env,
    }  # fmt: skip
    done = subprocess.run(
        ["sh", str(out / "install.sh"), *args], capture_output=True, text=True,
        env=environment, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines()


def test_the_install_script_installs_the_fleet_then_each_cluster_in_order(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    helm_values.render(profile.load("smoke"), out)
    calls = _run_install(out, tmp_path, "--set", "image.tag=t1", C2="prod-2")
    charts = tmp_path / "charts"
    assert calls == [
        f"helm install fleet {charts}/bigfleet --kube-context management -n bigfleet-system"
        " --create-namespace -f bigfleet-values.yaml --set image.tag=t1",
        f"helm install bigfleet-operator {charts}/bigfleet-operator --kube-context c1"
        " -n bigfleet-system --create-namespace -f operator-c1-values.yaml --set image.tag=t1",
        f"helm install bigfleet-pod-controller {charts}/bigfleet-unschedulable-pod-controller"
        " --kube-context c1 -n bigfleet-system -f pod-controller-values.yaml --set image.tag=t1",
        "kubectl --context c1 apply -f load.yaml",
        f"helm install bigfleet-operator {charts}/bigfleet-operator --kube-context prod-2"
        " -n bigfleet-system --create-namespace -f operator-c2-values.yaml --set image.tag=t1",
        f"helm install bigfleet-pod-controller {charts}/bigfleet-unschedulable-pod-controller"
        " --kube-context prod-2 -n bigfleet-system -f pod-controller-values.yaml"
        " --set image.tag=t1",
        "kubectl --context prod-2 apply -f load.yaml",
    ]


def test_the_install_script_points_operators_at_a_shard_address_given_to_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    helm_values.render(profile.load("failover-shard-kill"), out)
    calls = _run_install(out, tmp_path, SHARD_ADDRESS="shard.example:443")
    (operator,) = [c for c in calls if "bigfleet-operator " in c]
    assert operator.endswith("-f operator-c1-values.yaml --set shardAddress=shard.example:443")
    assert sum("shardAddress" in c for c in calls) == 1


def test_the_install_script_refuses_to_guess_where_the_charts_are(tmp_path: Path) -> None:
    helm_values.render(profile.load("smoke"), tmp_path)
    environment = {k: v for k, v in os.environ.items() if k != "CHARTS"}
    done = subprocess.run(
        ["sh", str(tmp_path / "install.sh")], capture_output=True, text=True,
        env=environment, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "CHARTS" in done.stderr


def test_scaletest_with_the_helm_substrate_writes_the_files_and_runs_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["scaletest", "--profile", "smoke", "--substrate", "helm", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'operator-c2-values.yaml'}" in result.output
    assert 'kubectl --context "$C2" apply -f load.yaml' in result.output
    assert not (out / "summary.json").exists() and not (out / "work").exists()


def test_scaletest_with_the_helm_substrate_refuses_a_duration(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["scaletest", "--profile", "smoke", "--substrate", "helm", "--duration", "2m",
         "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--duration" in result.output
    assert not out.exists()


def test_scaletest_knows_no_other_substrate() -> None:
    result = CliRunner().invoke(main, ["scaletest", "--profile", "smoke", "--substrate", "kind"])
    assert result.exit_code == 2
    assert "'local', 'helm'" in result.output or "local, helm" in result.output
