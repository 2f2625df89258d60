"""The scale-test harness's pieces that need no cluster: profiles, metric arithmetic, gates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bigfleet.scaletest import gates, profile
from bigfleet.scaletest.load import GANG_LABEL, LABEL, Census, deployments
from bigfleet.scaletest.profile import Gates, ProfileError
from bigfleet.scaletest.scrape import Labels, Snapshot, increase, parse, quantile, window

METRICS = """\
# TYPE bigfleet_shard_cycle_duration_seconds histogram
bigfleet_shard_cycle_duration_seconds_bucket{le="0.01"} 90.0
bigfleet_shard_cycle_duration_seconds_bucket{le="0.02"} 99.0
bigfleet_shard_cycle_duration_seconds_bucket{le="+Inf"} 100.0
bigfleet_shard_cycle_duration_seconds_count 100.0
bigfleet_shard_cycle_duration_seconds_sum 0.9
# TYPE bigfleet_shard_actions_total counter
bigfleet_shard_actions_total{kind="Reclaim"} 2.0
bigfleet_shard_actions_total{kind="Bootstrap"} 40.0
# TYPE bigfleet_shard_shortfalls gauge
bigfleet_shard_shortfalls 0.0
"""


@pytest.mark.parametrize("name", profile.available())
def test_every_packaged_profile_loads(name: str) -> None:
    loaded = profile.load(name)
    assert loaded.name == name and loaded.target_pods > 0


@pytest.mark.parametrize(
    ("text", "seconds"), [(90, 90), ("90s", 90.0), ("1m30s", 90.0), ("2m", 120.0), ("0.5s", 0.5)]
)
def test_durations(text: object, seconds: float) -> None:
    assert profile.seconds(text) == seconds


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"clusters": 0}, "clusters"),
        ({"soak": "soon"}, "soak"),
        ({"surprise": 1}, "surprise"),
        ({"fleet": {"pools": [{"prefix": "x", "count": -1}]}}, "fleet.pools.0.count"),
        ({"actions": [{"at": "5s", "kill": "etcd"}]}, "actions.0.kill"),
        ({"actions": [{"at": "5s", "partition": ["etcd"]}]}, "actions.0.partition.0"),
        ({"actions": [{"at": "5s", "partition": ["provider"], "kill": "shard"}]}, "actions.0"),
        ({"actions": [{"at": "5s"}]}, "actions.0"),
        ({"actions": [{"at": "5s", "partition": ["provider", "provider"]}]}, "actions.0"),
        # The smoke profile runs no coordinator, so there is no link to it to cut.
        ({"actions": [{"at": "5s", "partition": ["coordinator"]}]}, "profile"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, object], named: str
) -> None:
    data = yaml.safe_load((profile.PROFILE_DIR / "smoke.yaml").read_text()) | change
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=rf"bad.yaml: {named}\b"):
        profile.load(str(path))


def test_an_action_names_what_it_does() -> None:
    actions = profile.load("failover-soak").actions
    leader, shard = "kill coordinator-leader", "kill shard"
    assert [a.name for a in actions] == [leader, shard, leader]
    (cut,) = profile.load("failover-partition").actions
    assert cut.name == "partition the shard from coordinator and provider"
    assert cut.lasts == 60


def test_an_unknown_profile_name_lists_the_packaged_ones() -> None:
    with pytest.raises(ProfileError, match="smoke"):
        profile.load("nope")


def test_quantiles_interpolate_within_the_bucket() -> None:
    buckets = {0.01: 90.0, 0.02: 99.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.01 * 50 / 90)
    assert quantile(buckets, 0.95) == pytest.approx(0.01 + 0.01 * 5 / 9)
    assert quantile(buckets, 0.999) == 0.02  # past the last finite bound: that bound
    assert quantile({0.01: 0.0, float("inf"): 0.0}, 0.99) is None


def test_windows_and_increases_survive_a_restart() -> None:
    assert increase(10, 4) == 6 and increase(3, 4) == 3 and increase(None, 4) is None
    assert window({1.0: 5, 2.0: 9}, {1.0: 2, 2.0: 3}) == {1.0: 3, 2.0: 6}
    assert window({1.0: 1, 2.0: 1}, {1.0: 2, 2.0: 3}) == {1.0: 1, 2.0: 1}  # began again


def _snapshot(text: str) -> Snapshot:
    return Snapshot(samples={"shard": parse(text)})


def test_figures_and_gates_from_two_snapshots() -> None:
    start = _snapshot(METRICS)
    end = _snapshot(
        METRICS.replace('le="0.01"} 90.0', 'le="0.01"} 190.0')
        .replace('le="0.02"} 99.0', 'le="0.02"} 199.0')
        .replace('le="+Inf"} 100.0', 'le="+Inf"} 200.0')
        .replace("seconds_count 100.0", "seconds_count 200.0")
        .replace('"Reclaim"} 2.0', '"Reclaim"} 3.0')
    )
    census = Census(pods=10, bound={f"c1/p{i}": "n" for i in range(10)}, requests=10)
    census.binds = [(100, 1), (100, 2), (100, 3), (100, 30)]
    figures = gates.figures(start, end, census, target_pods=10)
    assert figures["shardCycleDurationP99Seconds"] == pytest.approx(0.01 * 99 / 100, abs=1e-4)
    assert figures["reclaimActionsDuringSoak"] == 1
    assert figures["shardsReportingCycle"] == 1
    assert gates.figures(start, start, census, target_pods=10)["shardsReportingCycle"] == 0
    assert figures["endToEndPodBindP50Seconds"] == 2
    # Pods created in the soak time the steady state; the ramp's do not count then.
    census.binds += [(500, 4), (501, 6), (502, 8)]
    soaked = gates.figures(start, end, census, target_pods=10, soak_began=500)
    assert soaked["endToEndPodBindP50Seconds"] == 6
    assert (soaked["endToEndPodBindSamples"], soaked["endToEndPodBindSoakOnly"]) == (3, 1)
    assert figures["operatorAckP99Seconds"] == gates.UNMEASURED  # no operator was read

    judged = {g.name: g for g in gates.judge(Gates(), figures)}
    assert not judged["reclaimActionsDuringSoak"].passed  # the default allows none
    assert judged["shardCycleDurationP99Seconds"].passed
    assert "operatorAckP99Seconds" not in judged  # unmeasured: listed, not judged
    assert "operatorAckP99Seconds" in gates.unmeasured(Gates(), figures)


def test_counts_survive_a_killed_leader_and_its_successor() -> None:
    def applied(success: float, error: float = 0) -> dict[tuple[str, Labels], float]:
        name = "bigfleet_coordinator_apply_total"
        return {
            (name, frozenset({("outcome", "success")})): success,
            (name, frozenset({("outcome", "error")})): error,
        }

    start = Snapshot(samples={"coordinator-0": applied(18), "coordinator-1": applied(0)})
    end = Snapshot(samples={"coordinator-1": applied(28, error=1)})  # coordinator-0 was killed
    figures = gates.figures(start, end, Census(), target_pods=0)
    assert figures["coordinatorApplyErrorRate"] == round(1 / 47, 4)  # 18 + 28 + 1 writes
    (gate,) = [g for g in gates.judge(Gates(), figures) if g.name == "coordinatorApplyErrorRate"]
    assert not gate.passed


def test_killing_the_coordinator_leader_needs_replicas(tmp_path: Path) -> None:
    data = yaml.safe_load((profile.PROFILE_DIR / "smoke.yaml").read_text())
    data["actions"] = [{"at": "5s", "kill": "coordinator-leader"}]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="needs coordinatorReplicas >= 2"):
        profile.load(str(path))
    data |= {"coordinator": True, "coordinatorReplicas": 3}
    path.write_text(yaml.safe_dump(data))
    assert profile.load(str(path)).coordinator_replicas == 3


def test_a_gang_workload_is_one_deployment_per_gang_held_together_by_pod_affinity() -> None:
    data = yaml.safe_load((profile.PROFILE_DIR / "smoke.yaml").read_text())
    data["workloads"] = [
        {"name": "web", "replicas": 3},
        {"name": "cache", "replicas": 4, "cpu": "2", "gangs": 2},
    ]
    loaded = profile.Profile.model_validate(data)
    assert loaded.pods_per_cluster == 3 + 2 * 4
    bodies = {d["metadata"]["name"]: d for d in deployments(loaded)}
    assert sorted(bodies) == ["cache-g0", "cache-g1", "web"]
    assert "affinity" not in bodies["web"]["spec"]["template"]["spec"]
    gang = bodies["cache-g1"]["spec"]
    assert gang["replicas"] == 4
    labels = gang["template"]["metadata"]["labels"]
    assert labels == {LABEL: "cache", GANG_LABEL: "cache-g1"}
    (term,) = gang["template"]["spec"]["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term == {
        "labelSelector": {"matchLabels": {GANG_LABEL: "cache-g1"}},
        "topologyKey": "topology.kubernetes.io/rack",
    }


def test_a_ramp_grows_plain_workloads_by_their_share_and_gang_workloads_by_whole_gangs() -> None:
    data = yaml.safe_load((profile.PROFILE_DIR / "smoke.yaml").read_text())
    data["workloads"] = [
        {"name": "web", "replicas": 10},
        {"name": "cache", "replicas": 4, "cpu": "2", "gangs": 3},
    ]
    data["ramp"] = "1m"
    loaded = profile.Profile.model_validate(data)
    assert loaded.ramp_s == 60

    def sizes(share: float) -> dict[str, int]:
        return {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments(loaded, share)}

    assert sizes(0.0) == {"web": 0}  # made at once, empty: the ramp scales it
    assert sizes(0.5) == {"web": 5, "cache-g0": 4}
    assert sizes(2 / 3) == {"web": 7, "cache-g0": 4, "cache-g1": 4}  # a gang comes whole
    assert sizes(1.0) == {"web": 10, "cache-g0": 4, "cache-g1": 4, "cache-g2": 4}
    assert sizes(1.0) == {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments(loaded)}
