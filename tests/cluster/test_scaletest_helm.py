"""The helm substrate's values rendered by the real charts: for every packaged profile,
`helm template` of each chart with the files `bigfleet scaletest --substrate helm` wrote
gives the profile's topology, and each container's arguments parse with the CLI.

helm comes from scripts/build-control-plane.sh, as for tests/cluster/test_charts.py;
without it these tests fail, they do not skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bigfleet.controlplane import KUBE_VERSION
from bigfleet.providers_fake.config import FleetConfig
from bigfleet.scaletest import helm_values, profile
from bigfleet.scaletest.profile import Profile
from tests.cluster.test_charts import (
    BIGFLEET,
    OPERATOR,
    POD_CONTROLLER,
    Helm,
    Rendered,
    args_of,
    containers,
    flag,
    localize,
    materialize_mounts,
    parse_cli,
)


def template(helm: Helm, chart: Path, values_file: Path, release: str) -> Rendered:
    """The chart rendered with the written file itself, as `helm install -f` reads it."""
    result = helm.run(
        "template", release, str(chart), "--namespace", helm_values.NAMESPACE,
        "--kube-version", KUBE_VERSION, "--values", str(values_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return Rendered(result.stdout)


@pytest.fixture(params=profile.available())
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Profile, Path]:
    loaded = profile.load(request.param)
    helm_values.render(loaded, tmp_path / "out")
    return loaded, tmp_path / "out"


def test_the_fleet_chart_runs_the_profiles_shard_coordinator_and_fleet(
    helm: Helm, written: tuple[Profile, Path], tmp_path: Path
) -> None:
    loaded, out = written
    rendered = template(helm, BIGFLEET, out / helm_values.FLEET_VALUES, helm_values.FLEET_RELEASE)

    shard = rendered.get("StatefulSet", "-shard")
    assert shard["spec"]["replicas"] == 1
    shard_args = args_of(shard, "shard")
    assert float(flag(shard_args, "--cycle-interval")) == loaded.cycle_interval_s
    # The address every operator values file dials is shard pod 0 through this release's
    # headless Service.
    ports = containers(shard)["shard"]["ports"]
    port = next(p["containerPort"] for p in ports if p["name"] == "grpc")
    pod_zero = f"{shard['metadata']['name']}-0.{shard['spec']['serviceName']}"
    assert f"{pod_zero}.{helm_values.NAMESPACE}.svc:{port}" == helm_values.SHARD_ADDRESS

    coordinators = [
        s for s in rendered.of("StatefulSet") if s["metadata"]["name"].endswith("-coordinator")
    ]
    if not loaded.coordinator:
        assert coordinators == []
        assert not any(a.startswith("--coordinator-addr=") for a in shard_args)
    else:
        (coordinator,) = coordinators
        assert coordinator["spec"]["replicas"] == loaded.coordinator_replicas
        addresses = flag(shard_args, "--coordinator-addr").split(",")
        assert len(addresses) == loaded.coordinator_replicas
        assert flag(shard_args, "--coordinator-heartbeat-interval") == "1"
        etcd = [s for s in rendered.of("StatefulSet") if s["metadata"]["name"].endswith("-etcd")]
        if loaded.coordinator_replicas > 1:
            assert [s["spec"]["replicas"] for s in etcd] == [3]
        else:
            assert etcd == []
            assert flag(args_of(coordinator, "coordinator"), "--store") == "embedded"

    fake = rendered.get("Deployment", "-fake-provider")
    provider_args = args_of(fake, "provider")
    assert "--join-nodes" in provider_args
    mounts = materialize_mounts(rendered, fake, "provider", tmp_path / "mounts")
    parsed = parse_cli(localize(provider_args, mounts))
    assert parsed.params["join_nodes"] is True
    assert (parsed.params["idle"], parsed.params["speculative"]) == (0, 0)
    assert FleetConfig.load(parsed.params["config_path"]) == loaded.fleet


def test_each_cluster_gets_an_operator_with_its_name_and_a_per_pod_controller(
    helm: Helm, written: tuple[Profile, Path]
) -> None:
    loaded, out = written
    names = []
    for cluster in loaded.cluster_names:
        rendered = template(
            helm, OPERATOR, out / helm_values.operator_values_file(cluster),
            helm_values.OPERATOR_RELEASE,
        )  # fmt: skip
        args = args_of(rendered.get("Deployment", "-operator"), "operator")
        names.append(flag(args, "--cluster-id"))
        assert flag(args, "--shard") == helm_values.SHARD_ADDRESS
        assert float(flag(args, "--rollup-interval")) == loaded.rollup_interval_s
        parse_cli(args)
    assert names == loaded.cluster_names

    rendered = template(
        helm, POD_CONTROLLER, out / helm_values.POD_CONTROLLER_VALUES,
        helm_values.POD_CONTROLLER_RELEASE,
    )  # fmt: skip
    (controller,) = rendered.of("Deployment")
    args = args_of(controller, controller["spec"]["template"]["spec"]["containers"][0]["name"])
    assert flag(args, "--mode") == "per-pod"
    parse_cli(args)
