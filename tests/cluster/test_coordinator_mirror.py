"""The coordinator's leader mirrors its view of each shard onto the Shard objects."""

from __future__ import annotations

from pathlib import Path

import kr8s.asyncio

from bigfleet.coordinator.embedded import EmbeddedElection, EmbeddedState
from bigfleet.coordinator.mirror import StatusMirror
from bigfleet.coordinator.service import CoordinatorService
from bigfleet.crd import Shard
from bigfleet.crd import models as m
from bigfleet.wire import coordinator_pb2 as pb


class Context:
    """Enough of a gRPC servicer context for calls that succeed."""

    async def abort(self, code: object, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


async def test_leader_mirrors_registrations_domains_and_forgotten_shards(
    api: kr8s.asyncio.Api, tmp_path: Path
) -> None:
    state = EmbeddedState(tmp_path / "coordinator.json")
    election = EmbeddedElection(state, "coord-0")
    service = CoordinatorService(election, state)
    leadership = await election.campaign()
    service.store = election.store_for(leadership.term, state.prefix)
    ctx = Context()
    for shard_id in ("mirror-a", "mirror-b"):
        report = pb.ShardReport(shard_id=shard_id, shard_address=f"{shard_id}:7780")
        await service.ReportShard(report, ctx)  # type: ignore[arg-type]
    assign = pb.AssignDomainRequest(
        topology_key="topology.kubernetes.io/zone", topology_value="z1", shard_id="mirror-a"
    )
    await service.AssignDomain(assign, ctx)  # type: ignore[arg-type]
    # A Shard object for a shard the coordinator does not know.
    await Shard(Shard.manifest("mirror-gone", m.ShardSpec()), api=api).create()

    mirror = StatusMirror(api, lambda: service.store, "coord-0", interval_s=60)
    assert service.store is not None
    await mirror.publish_once(service.store)

    a = await Shard.get("mirror-a", api=api)
    view = a.status["coordinator"]
    assert view["registered"] is True
    assert view["address"] == "mirror-a:7780"
    assert view["domains"] == ["topology.kubernetes.io/zone=z1"]
    assert view["leader"] == "coord-0" and view["term"] == leadership.term
    assert view["lastHeartbeatTime"].endswith("Z")
    b = await Shard.get("mirror-b", api=api)
    assert b.status["coordinator"]["domains"] == []
    gone = await Shard.get("mirror-gone", api=api)
    assert gone.status["coordinator"]["registered"] is False

    # Removing a shard is mirrored on the next pass, without deleting its object.
    await service.RemoveShard(pb.RemoveShardRequest(shard_id="mirror-a"), ctx)  # type: ignore[arg-type]
    await mirror.publish_once(service.store)
    a = await Shard.get("mirror-a", api=api)
    assert a.status["coordinator"]["registered"] is False
    assert a.status["coordinator"]["domains"] == []
