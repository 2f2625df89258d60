"""The simulator acts through the shard's own runtime: one action path, on simulated time."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bigfleet.providers_fake.config import FleetConfig, LatencyConfig, Pool
from bigfleet.providers_fake.inprocess import InProcessProvider
from bigfleet.shard.engine.inventory import Inventory
from bigfleet.shard.engine.machine import MachineState
from bigfleet.shard.runtime.blobs import OperatorBlobs
from bigfleet.shard.runtime.channels import Channels
from bigfleet.shard.runtime.executor import Executor
from bigfleet.shard.runtime.metrics import ShardMetrics
from bigfleet.shard.runtime.reconcile import Reconciler
from bigfleet.shard.runtime.state import ShardState
from bigfleet.sim import runner, shard_loop, simtime
from bigfleet.sim.operators import StubBlobs
from bigfleet.sim.scenario import find
from bigfleet.sim.shard_loop import SimShard
from bigfleet.wire import capacity_pb2, provider_pb2, shard_pb2

SIM_DIR = Path(shard_loop.__file__).resolve().parent
LIFECYCLE = {"create", "configure", "drain", "delete"}
S = MachineState


def _pool(count: int, state: str = "idle") -> Pool:
    return Pool(
        prefix=state,
        count=count,
        state=state,  # type: ignore[arg-type]
        instance_type="t",
        resources={"cpu": "4"},
    )


def _rollup(cluster: str, units: int) -> capacity_pb2.ClusterCapacityNeeds:
    need = capacity_pb2.CapacityNeed(
        requirements=[
            capacity_pb2.NodeSelectorRequirement(
                key="node.kubernetes.io/instance-type",
                operator=capacity_pb2.NodeSelectorRequirement.OPERATOR_IN,
                values=["t"],
            )
        ],
        aggregate_resources={"cpu": str(4 * units)},
        min_unit={"cpu": "4"},
        priority=10,
    )
    return capacity_pb2.ClusterCapacityNeeds(cluster_id=cluster, needs=[need])


def _states(shard: SimShard) -> dict[str, int]:
    return {s.title: n for s, n in shard.inventory.count_by_state().items()}


def _outcomes(shard: SimShard, outcome: str) -> float:
    return shard.metrics.action_outcomes.labels("Bootstrap", outcome)._value.get()


# -- the same code as the shard ---------------------------------------------------------------


def test_the_simulator_drives_the_shards_own_executor_reconcile_and_state() -> None:
    with SimShard(FleetConfig(pools=(_pool(1),)), shard_id="same") as shard:
        assert type(shard.executor) is Executor
        assert type(shard.reconciler) is Reconciler
        assert type(shard.state) is ShardState
        assert shard.executor.record == shard.state.record  # one write path into the inventory
        (provider,) = shard.executor.providers.values()
        assert isinstance(provider, InProcessProvider)
        assert shard.reconciler.providers == shard.executor.providers


def _sim_sources() -> list[Path]:
    return sorted(SIM_DIR.glob("*.py"))


def test_no_simulator_module_calls_a_lifecycle_method_itself() -> None:
    offenders = []
    for path in _sim_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LIFECYCLE
            ):
                offenders.append(f"{path.name}:{node.lineno} .{node.func.attr}(...)")
    assert offenders == []


def test_the_simulator_reaches_the_fake_only_through_its_config_and_the_provider_seam() -> None:
    imported = set()
    for path in _sim_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    fake = {m for m in imported if m.startswith("bigfleet.providers_fake")}
    assert fake == {"bigfleet.providers_fake.config", "bigfleet.providers_fake.inprocess"}
    assert not hasattr(SimShard, "_execute") and not hasattr(SimShard, "reconcile")


def test_reclaims_go_to_the_operator_before_the_provider_drains() -> None:
    with SimShard(FleetConfig(pools=(_pool(3),)), shard_id="reclaim") as shard:
        shard.rollup(_rollup("c1", 3))
        shard.cycle()
        shard.rollup(capacity_pb2.ClusterCapacityNeeds(cluster_id="c1"))  # withdrawn
        assert [a.kind.value for a in shard.cycle()] == ["Reclaim"] * 3
        assert _states(shard) == {"Idle": 3}
        assert shard.operators.frames["reclaim_instruction"] == 3
        assert shard.channels.get("c1").reclaims == {}  # each one acknowledged


# -- simulated time ----------------------------------------------------------------------------


def test_a_blob_dwell_longer_than_a_cycle_keeps_the_machine_configuring() -> None:
    with SimShard(FleetConfig(pools=(_pool(1),)), shard_id="dwell", blob_dwell_s=15) as shard:
        shard.rollup(_rollup("c1", 1))
        assert [a.kind.value for a in shard.cycle()] == ["Bootstrap"]
        assert _states(shard) == {"Configuring": 1}
        shard.cycle()  # the blob comes at 15 s, within this cycle
        assert _states(shard) == {"Configured": 1}
        assert shard.tally.actions == {"Bootstrap": 1}  # the in-flight one was not redone
        assert shard.clock.monotonic() == 20.0


def test_fleet_transitions_take_simulated_seconds() -> None:
    config = FleetConfig(pools=(_pool(1),), latency=LatencyConfig(configuring=25))
    with SimShard(config, shard_id="latency") as shard:
        shard.rollup(_rollup("c1", 1))
        seen = []
        for _ in range(4):
            shard.cycle()
            seen.append(_states(shard))
        # Configure at 0 s completes at 25 s: first seen by the reconcile at 30 s.
        assert seen == [{"Configuring": 1}] * 3 + [{"Configured": 1}]


def test_provision_waits_for_the_machine_to_be_idle_before_configuring() -> None:
    config = FleetConfig(pools=(_pool(1, "speculative"),), latency=LatencyConfig(creating=4))
    with SimShard(config, shard_id="provision") as shard:
        shard.rollup(_rollup("c1", 1))
        assert [a.kind.value for a in shard.cycle()] == ["Provision"]
        assert _states(shard) == {"Configured": 1}
        assert shard.fleet.get("speculative-0").shard_metadata  # attribution reached Configure


def test_runs_with_dwells_are_deterministic() -> None:
    scenario = find("priority-inversion").model_copy(
        update={"latency": LatencyConfig(configuring=12, draining=7), "blob_dwell_seconds": 3}
    )
    first = runner.run(scenario, cycles=4)
    again = runner.run(scenario, cycles=4)
    assert first.trace.text() == again.trace.text()
    assert first.report["final_state"]["configured_per_cluster"] == {"cluster-train": 4}


def test_the_loop_jumps_to_the_next_timer_and_refuses_to_wait_forever() -> None:
    run, clock = simtime.runner()
    with run:
        run.run(asyncio.sleep(3600))
        assert clock.monotonic() == 3600.0
        assert clock.time() == simtime.EPOCH_S + 3600.0

        async def forever() -> None:
            await asyncio.get_running_loop().create_future()

        with pytest.raises(simtime.Stalled):
            run.run(forever())


# -- the executor's blob source ----------------------------------------------------------------


class _NoSession(StubBlobs):
    def ready(self, cluster: str) -> bool:
        return False


class _Silent(StubBlobs):
    async def request(
        self, cluster: str, requirements: Sequence[capacity_pb2.NodeSelectorRequirement]
    ) -> shard_pb2.BootstrapBlobResponse:
        await asyncio.sleep(3600)
        raise AssertionError("the executor's timeout ends this first")


class _Refusing(StubBlobs):
    async def request(
        self, cluster: str, requirements: Sequence[capacity_pb2.NodeSelectorRequirement]
    ) -> shard_pb2.BootstrapBlobResponse:
        return shard_pb2.BootstrapBlobResponse(error="no template for this shape")


@pytest.mark.parametrize(
    ("source", "outcome"),
    [(_NoSession(), "no_session"), (_Refusing(), "blob_error"), (_Silent(), "blob_timeout")],
)
def test_a_blob_that_does_not_come_rolls_the_machine_back_to_idle(
    source: StubBlobs, outcome: str
) -> None:
    with SimShard(FleetConfig(pools=(_pool(1),)), shard_id="blobs") as shard:
        shard.executor.blobs = source
        shard.executor.bootstrap_timeout_s = 5.0  # simulated: runs out within the cycle
        shard.rollup(_rollup("c1", 1))
        shard.cycle()
        assert _outcomes(shard, outcome) == 1
        assert shard.fleet.get("idle-0").state == provider_pb2.MACHINE_STATE_IDLE  # untouched
        assert _states(shard) == {"Idle": 1}


def test_a_running_shard_asks_its_operators_for_blobs() -> None:
    metrics = ShardMetrics(CollectorRegistry())
    channels = Channels(metrics, 16)
    executor = Executor(
        inventory=Inventory(),
        record=lambda machine: True,
        in_flight=set(),
        channels=channels,
        metrics=metrics,
        providers={},
        owners={},
    )
    assert isinstance(executor.blobs, OperatorBlobs)
    assert executor.blobs.channels is channels
    assert not executor.blobs.ready("c1")  # no operator session yet
    channels.install("c1")
    assert executor.blobs.ready("c1")
