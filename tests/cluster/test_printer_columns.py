"""`kubectl get` shows the columns people read BigFleet's state from."""

from __future__ import annotations

import json

import kr8s.asyncio

from bigfleet.controlplane import LocalControlPlane
from bigfleet.crd import CapacityRequest, Shard, UpcomingNode
from bigfleet.crd import models as m


def _header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def _row(output: str, name: str) -> dict[str, str]:
    """The row of `name` as {column: cell}, cut where header columns start (cells may be blank)."""
    header, *lines = output.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    (line,) = [ln for ln in lines if ln.split()[0] == name]
    bounds = [*starts[1:], None]
    return {
        header[start:end].strip(): line[start:end].strip()
        for start, end in zip(starts, bounds, strict=True)
    }


async def test_capacity_request_columns(
    api: kr8s.asyncio.Api, namespace: str, control_plane: LocalControlPlane
) -> None:
    spec = m.CapacityRequestSpec(
        resources={"cpu": "3", "memory": "5Gi"}, priority=700, interruption_penalty="40"
    )
    await CapacityRequest(
        CapacityRequest.manifest("cols", spec, namespace=namespace), api=api
    ).create()

    narrow = control_plane.kubectl("get", "crs", "-n", namespace).stdout
    assert _header(narrow) == ["NAME", "PHASE", "SATISFIED", "PRIORITY", "AGE"]

    wide = control_plane.kubectl("get", "capacityrequests", "-n", namespace, "-o", "wide").stdout
    assert _header(wide) == [
        "NAME",
        "PHASE",
        "SATISFIED",
        "REASON",
        "PRIORITY",
        "AGE",
        "CPU",
        "MEMORY",
        "INTERRUPTION-PENALTY",
        "ACKNOWLEDGED",
    ]
    row = _row(wide, "cols")
    assert row["PHASE"] == "Pending"  # at once, before the operator wrote anything
    assert row["SATISFIED"] == row["REASON"] == ""  # nor a verdict before the shard's cycle
    assert (row["PRIORITY"], row["CPU"], row["MEMORY"]) == ("700", "3", "5Gi")
    assert row["INTERRUPTION-PENALTY"] == "40"


async def test_capacity_requests_select_by_phase(
    api: kr8s.asyncio.Api, namespace: str, control_plane: LocalControlPlane
) -> None:
    spec = m.CapacityRequestSpec(resources={"cpu": "1"}, priority=1)
    for name in ("acked", "waiting"):
        await CapacityRequest(
            CapacityRequest.manifest(name, spec, namespace=namespace), api=api
        ).create()
    acked = await CapacityRequest.get("acked", namespace=namespace, api=api)
    await acked.patch({"status": {"phase": "Acknowledged"}}, subresource="status")

    out = control_plane.kubectl(
        "get", "crs", "-n", namespace, "--field-selector=status.phase=Acknowledged", "-o", "name"
    ).stdout
    assert out.split() == ["capacityrequest.bigfleet.lucy.sh/acked"]
    out = control_plane.kubectl(
        "get", "crs", "-n", namespace, "--field-selector=status.phase=Pending", "-o", "name"
    ).stdout
    assert out.split() == ["capacityrequest.bigfleet.lucy.sh/waiting"]


async def test_upcoming_node_columns(
    api: kr8s.asyncio.Api, control_plane: LocalControlPlane
) -> None:
    spec = m.UpcomingNodeSpec(
        labels={"node.kubernetes.io/instance-type": "c6i.large"}, resources={"cpu": "2"}
    )
    node = UpcomingNode(UpcomingNode.manifest("un-cols", spec), api=api)
    await node.create()
    await node.patch(
        {
            "status": {
                "phase": "Failed",
                "nodeRef": {"kind": "Node", "name": "n-7"},
                "providerID": "fake://7",
                "lastError": "boot-timeout",
            }
        },
        subresource="status",
    )

    wide = control_plane.kubectl("get", "upn", "-o", "wide").stdout
    assert _header(wide) == [
        "NAME",
        "PHASE",
        "NODE",
        "AGE",
        "PROVIDER-ID",
        "INSTANCE-TYPE",
        "ERROR",
    ]
    row = _row(wide, "un-cols")
    assert (row["PHASE"], row["NODE"], row["PROVIDER-ID"]) == ("Failed", "n-7", "fake://7")
    assert (row["INSTANCE-TYPE"], row["ERROR"]) == ("c6i.large", "boot-timeout")
    await node.delete()


async def test_shard_columns_make_a_dashboard(
    api: kr8s.asyncio.Api, control_plane: LocalControlPlane
) -> None:
    shard = Shard(Shard.manifest("shard-cols", m.ShardSpec(pause_reclaims=True)), api=api)
    await shard.create()
    await shard.patch(
        {
            "status": {
                "epoch": 4,
                "inventory": {"total": 12, "idle": 5},
                "demand": {"needs": 9},
                "shortfallCount": 2,
                "connectedClusterCount": 3,
                "cycleP99Seconds": 0.042,
                "cycleP99Milliseconds": 42.0,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "CycleCompleted",
                        "message": "ok",
                        "lastTransitionTime": "2026-11-22T12:00:00Z",
                    },
                    {
                        "type": "Degraded",
                        "status": "True",
                        "reason": "ShortfallAged",
                        "message": "x",
                        "lastTransitionTime": "2026-11-22T12:00:00Z",
                    },
                ],
            }
        },
        subresource="status",
    )

    wide = control_plane.kubectl("get", "shards", "-o", "wide").stdout
    assert _header(wide) == [
        "NAME",
        "READY",
        "EPOCH",
        "MACHINES",
        "IDLE",
        "NEEDS",
        "SHORTFALLS",
        "CLUSTERS",
        "CYCLE-P99-MS",
        "AGE",
        "ACQUISITIONS-PAUSED",
        "RECLAIMS-PAUSED",
        "DRY-RUN",
        "LAST-CYCLE",
        "DEGRADED",
        "LAST-HEARTBEAT",
    ]
    row = _row(wide, "shard-cols")
    assert {
        k: row[k]
        for k in (
            "READY",
            "EPOCH",
            "MACHINES",
            "IDLE",
            "NEEDS",
            "SHORTFALLS",
            "CLUSTERS",
            "CYCLE-P99-MS",
        )
    } == {
        "READY": "True",
        "EPOCH": "4",
        "MACHINES": "12",
        "IDLE": "5",
        "NEEDS": "9",
        "SHORTFALLS": "2",
        "CLUSTERS": "3",
        "CYCLE-P99-MS": "42",
    }
    assert (row["ACQUISITIONS-PAUSED"], row["RECLAIMS-PAUSED"], row["DRY-RUN"]) == (
        "false",
        "true",
        "false",
    )
    assert row["DEGRADED"] == "ShortfallAged"
    await shard.delete()


async def test_available_capacity_columns_show_the_shape(
    control_plane: LocalControlPlane,
) -> None:
    manifest = {
        "apiVersion": "bigfleet.lucy.sh/v1alpha1",
        "kind": "AvailableCapacity",
        "metadata": {"name": "ac-columns"},
        "spec": {
            "resources": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "8"},
            "availableCount": 4,
            "availability": "High",
            "cost": "2.5",
        },
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    try:
        out = control_plane.kubectl("get", "availablecapacities").stdout
        assert _header(out) == [
            "NAME", "AVAILABILITY", "AVAILABLE", "COST", "CPU", "MEMORY", "GPU", "AGE"
        ]  # fmt: skip
        row = _row(out, "ac-columns")
        assert (row["CPU"], row["MEMORY"], row["GPU"]) == ("8", "32Gi", "8")
        assert row["AVAILABILITY"] == "High" and row["AGE"]
    finally:
        control_plane.kubectl("delete", "availablecapacities", "ac-columns")
