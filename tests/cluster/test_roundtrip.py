"""A valid object of each kind survives a create/read through kr8s unchanged."""

from __future__ import annotations

import datetime

import kr8s.asyncio

from bigfleet.crd import AvailableCapacity, CapacityRequest, Shard, UpcomingNode
from bigfleet.crd import models as m

NOW = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.UTC)


def _capacity_request_spec() -> m.CapacityRequestSpec:
    return m.CapacityRequestSpec(
        requirements=(
            m.NodeSelectorRequirement(
                key="topology.kubernetes.io/zone", operator="In", values=("zone-a", "zone-b")
            ),
            m.NodeSelectorRequirement(key="gpu", operator="DoesNotExist"),
        ),
        resources={"cpu": "1500m", "memory": "6Gi", "nvidia.com/gpu": "0"},
        priority=-5,
        topology_spread=(
            m.TopologySpread(
                topology_key="topology.kubernetes.io/zone",
                max_skew=2,
                when_unsatisfiable="DoNotSchedule",
            ),
        ),
        co_location=m.CoLocation(
            topology_key="rack",
            label_selector=m.LabelSelector(match_labels={"gang": "g1"}),
        ),
        interruption_penalty="500m",
        reclamation_penalty="12000",
    )


async def test_capacity_request_round_trips(api: kr8s.asyncio.Api, namespace: str) -> None:
    spec = _capacity_request_spec()
    created = CapacityRequest(CapacityRequest.manifest("cr-1", spec, namespace=namespace), api=api)
    await created.create()

    fetched = await CapacityRequest.get("cr-1", namespace=namespace, api=api)
    assert fetched.spec_model() == spec
    # Declaring the class registered the kind: generic lookups return our type.
    [listed] = [o async for o in api.get("capacityrequests", namespace=namespace)]
    assert isinstance(listed, CapacityRequest)
    # Before the operator writes anything, the CRD's default says Pending.
    assert fetched.status_model() == m.CapacityRequestStatus(phase="Pending")

    status = m.CapacityRequestStatus(phase="Acknowledged", acknowledged_at=NOW)
    await fetched.patch({"status": status.to_object()}, subresource="status")
    again = await CapacityRequest.get("cr-1", namespace=namespace, api=api)
    assert again.status_model() == status
    assert again.spec_model() == spec


async def test_upcoming_node_round_trips(api: kr8s.asyncio.Api) -> None:
    spec = m.UpcomingNodeSpec(
        labels={"node.kubernetes.io/instance-type": "m6i.large"},
        resources={"cpu": "2", "memory": "8Gi"},
        taints=(m.Taint(key="bigfleet.lucy.sh/warming", effect="NoSchedule"),),
    )
    node = UpcomingNode(UpcomingNode.manifest("un-roundtrip", spec), api=api)
    await node.create()
    status = m.UpcomingNodeStatus(
        phase="Ready",
        node_ref=m.ObjectReference(kind="Node", name="m-0001"),
        provider_id="fake://m-0001",
        provisioning_start_time=NOW,
    )
    await node.patch({"status": status.to_object()}, subresource="status")

    fetched = await UpcomingNode.get("un-roundtrip", api=api)
    assert fetched.spec_model() == spec
    assert fetched.status_model() == status
    assert fetched.raw["status"]["providerID"] == "fake://m-0001"
    await fetched.delete()


async def test_available_capacity_round_trips(api: kr8s.asyncio.Api) -> None:
    spec = m.AvailableCapacitySpec(
        requirements=(m.AvailableCapacityRequirement(key="rack", operator="Same"),),
        resources={"cpu": "8"},
        available_count=0,
        availability="None",
        cost="0",
    )
    await AvailableCapacity(AvailableCapacity.manifest("ac-roundtrip", spec), api=api).create()
    fetched = await AvailableCapacity.get("ac-roundtrip", api=api)
    assert fetched.spec_model() == spec
    await fetched.delete()


async def test_shard_defaults_fill_unset_controls(api: kr8s.asyncio.Api) -> None:
    await Shard(
        {"apiVersion": Shard.version, "kind": "Shard", "metadata": {"name": "shard-defaults"}},
        api=api,
    ).create()
    fetched = await Shard.get("shard-defaults", api=api)
    # The API server applied the schema defaults: a new Shard runs, acquires and reclaims.
    assert fetched.raw["spec"] == {
        "pauseAcquisitions": False,
        "pauseReclaims": False,
        "dryRun": False,
        "cycleIntervalSeconds": 10,
    }
    assert fetched.spec_model() == m.ShardSpec()
    await fetched.delete()


async def test_shard_status_round_trips(api: kr8s.asyncio.Api) -> None:
    spec = m.ShardSpec(dry_run=True, cycle_interval_seconds=5)
    shard = Shard(Shard.manifest("shard-status", spec), api=api)
    await shard.create()
    status = m.ShardStatus(
        observed_generation=1,
        epoch=3,
        cycle=42,
        last_cycle_time=NOW,
        cycle_p50_seconds=0.004,
        cycle_p99_seconds=0.031,
        inventory=m.ShardInventory(total=10, idle=4, configured=6),
        demand=m.ShardDemand(needs=7, clusters=2),
        shortfall_count=1,
        shortfalls=(
            m.ShardShortfall(
                cluster="c1",
                requirements="zone in (a)",
                priority=100,
                deficit={"cpu": "4"},
                age_cycles=3,
            ),
        ),
        connected_clusters=("c1", "c2"),
        connected_cluster_count=2,
        conditions=(
            m.Condition(
                type="Ready",
                status="True",
                last_transition_time=NOW,
                reason="CycleCompleted",
                message="last cycle 31ms",
            ),
        ),
    )
    await shard.patch({"status": status.to_object()}, subresource="status")
    fetched = await Shard.get("shard-status", api=api)
    assert fetched.spec_model() == spec
    assert fetched.status_model() == status
    await fetched.delete()
