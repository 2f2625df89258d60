"""A shard, the fake provider and scripted operators, over real gRPC in one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bigfleet.providers_fake.config import FleetConfig, LatencyConfig, Pool
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.server import start as start_provider
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.service import ShardService, ShardSettings
from bigfleet.wire import GRPC_OPTIONS, capacity_pb2, shard_pb2, shard_pb2_grpc

TYPE = "m6i.2xlarge"  # the fake's default shape: 8 CPU / 32Gi


def need(cpus: int, priority: int = 100, **extra: object) -> capacity_pb2.CapacityNeed:
    """Demand for `cpus` CPUs on the default shape, one 8-CPU machine per 8 CPUs."""
    return capacity_pb2.CapacityNeed(
        requirements=[
            capacity_pb2.NodeSelectorRequirement(
                key="node.kubernetes.io/instance-type",
                operator=capacity_pb2.NodeSelectorRequirement.OPERATOR_IN,
                values=[TYPE],
            )
        ],
        aggregate_resources={"cpu": str(cpus)},
        min_unit={"cpu": "8"},
        priority=priority,
        **extra,
    )  # type: ignore[arg-type]


async def eventually(
    probe: Callable[[], object], timeout_s: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s}s")
        await asyncio.sleep(0.02)


@dataclass
class Operator:
    """A scripted operator: one Session stream, frames recorded, blobs answered on request."""

    cluster: str
    stub: shard_pb2_grpc.ShardStub
    answer_blobs: bool = True
    received: list[shard_pb2.ShardMessage] = field(default_factory=list)
    status: grpc.StatusCode | None = None
    details: str = ""  # the status message the stream ended with
    _outgoing: asyncio.Queue[shard_pb2.OperatorMessage | None] = field(
        default_factory=asyncio.Queue
    )
    _task: asyncio.Task[None] | None = None

    def start(self, hello: bool = True) -> None:
        if hello:
            self.send(
                shard_pb2.OperatorMessage(
                    hello=shard_pb2.Hello(cluster_id=self.cluster, protocol_version="v1alpha1")
                )
            )
        self._task = asyncio.create_task(self._run())

    def send(self, frame: shard_pb2.OperatorMessage) -> None:
        self._outgoing.put_nowait(frame)

    def rollup(self, *needs: capacity_pb2.CapacityNeed, cluster: str | None = None) -> None:
        self.send(
            shard_pb2.OperatorMessage(
                rollup=capacity_pb2.ClusterCapacityNeeds(
                    cluster_id=cluster or self.cluster,
                    timestamp_unix_nanos=time.time_ns(),
                    needs=list(needs),
                )
            )
        )

    async def _frames(self) -> AsyncIterator[shard_pb2.OperatorMessage]:
        while (frame := await self._outgoing.get()) is not None:
            yield frame

    async def _run(self) -> None:
        call = self.stub.Session(self._frames())
        try:
            async for frame in call:
                self.received.append(frame)
                if self.answer_blobs and frame.WhichOneof("payload") == "bootstrap_request":
                    request = frame.bootstrap_request
                    self.send(
                        shard_pb2.OperatorMessage(
                            bootstrap_response=shard_pb2.BootstrapBlobResponse(
                                request_id=request.request_id, user_data=b"join", ttl_seconds=600
                            )
                        )
                    )
            self.status = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            self.status, self.details = err.code(), err.details() or ""

    def frames(self, kind: str) -> list[shard_pb2.ShardMessage]:
        return [f for f in self.received if f.WhichOneof("payload") == kind]

    def node_states(self) -> dict[str, int]:
        """Latest state per machine from NodeStateUpdate frames."""
        states: dict[str, int] = {}
        for f in self.frames("node_state_update"):
            states[f.node_state_update.machine_id] = f.node_state_update.state
        return states

    async def close(self) -> None:
        self._outgoing.put_nowait(None)
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()


@dataclass
class Rig:
    fleet: FakeFleet
    provider_address: str
    data_dir: Path
    provider: grpc.aio.Server | None = None
    shard: ShardService | None = None
    shard_task: asyncio.Task[None] | None = None
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def start_shard(self, **overrides: object) -> ShardService:
        fields: dict[str, object] = {
            "shard_id": "shard-test",
            "listen": "127.0.0.1:0",
            "providers": (("fake", self.provider_address),),
            "data_dir": self.data_dir,
            "metrics_addr": "0",
            "cycle_interval_s": 0.2,
            "min_cycle_gap_s": 0.05,
            "bootstrap_timeout_s": 2.0,
            "execute_timeout_s": 5.0,
            "engine": EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)),
        }
        settings = ShardSettings(**(fields | overrides))  # type: ignore[arg-type]
        self.shard = ShardService(settings)
        # Every cycle in the engine's thread, however small the shard: the state's gate is
        # then under test in every component test (ADR 0024).
        self.shard.inline_below_items = 0
        started = asyncio.Event()
        self.shard_task = asyncio.create_task(self.shard.run(started))
        await asyncio.wait_for(started.wait(), 10)
        return self.shard

    async def stop_provider(self) -> None:
        if self.provider is not None:
            await self.provider.stop(grace=None)
            self.provider = None

    async def restart_provider(self) -> None:
        self.provider, _ = await start_provider(self.fleet, self.provider_address)

    async def stop_shard(self) -> None:
        if self.shard_task is not None:
            self.shard_task.cancel()
            await asyncio.gather(self.shard_task, return_exceptions=True)
            self.shard_task = None

    def operator(self, cluster: str, **kwargs: object) -> Operator:
        assert self.shard is not None
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.shard.port}", options=GRPC_OPTIONS)
        self.channels.append(channel)
        return Operator(cluster, shard_pb2_grpc.ShardStub(channel), **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def rig(
    tmp_path: Path, idle: int = 8, speculative: int = 0, config: FleetConfig | None = None
) -> AsyncIterator[Rig]:
    fleet = (config or FleetConfig()).with_quick_seeds(idle, speculative).build(time.monotonic)
    server, port = await start_provider(fleet, "127.0.0.1:0")
    the_rig = Rig(fleet, f"127.0.0.1:{port}", tmp_path / "data", server)
    try:
        yield the_rig
    finally:
        await the_rig.stop_shard()
        for channel in the_rig.channels:
            await channel.close()
        await the_rig.stop_provider()
    if the_rig.shard is not None:
        assert_writes_waited(the_rig.shard)


def assert_writes_waited(shard: ShardService) -> None:
    """Every inventory write path waited for the cycles it met (ADR 0024)."""
    assert shard.metrics.writes_deferred._value.get() == 0


def operator(shard: ShardService, cluster: str) -> Operator:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{shard.port}", options=GRPC_OPTIONS)
    return Operator(cluster, shard_pb2_grpc.ShardStub(channel))


@dataclass
class Pair:
    fleet: FakeFleet
    provider_address: str
    root: Path
    shards: dict[str, ShardService]
    tasks: dict[str, asyncio.Task[None]]

    async def start(self, shard_id: str, **overrides: object) -> ShardService:
        fields: dict[str, object] = dict(
            shard_id=shard_id,
            listen="127.0.0.1:0",
            providers=(("fake", self.provider_address),),
            data_dir=self.root / shard_id,
            metrics_addr="0",
            cycle_interval_s=0.2,
            min_cycle_gap_s=0.05,
            bootstrap_timeout_s=2.0,
            transfer_batch=2,
        )
        shard = ShardService(ShardSettings(**(fields | overrides)))  # type: ignore[arg-type]
        shard.inline_below_items = 0  # as Rig.start_shard
        started = asyncio.Event()
        self.tasks[shard_id] = asyncio.create_task(shard.run(started))
        await asyncio.wait_for(started.wait(), 10)
        self.shards[shard_id] = shard
        return shard

    async def stop(self, shard_id: str) -> None:
        task = self.tasks.pop(shard_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def owned(self, shard_id: str) -> set[str]:
        return {m.id for m in self.shards[shard_id].inventory.all()}


@asynccontextmanager
async def two_shards(
    tmp_path: Path, latency: LatencyConfig | None = None, **settings: object
) -> AsyncIterator[Pair]:
    """Shards "donor" and "recipient" on one provider: zone-a 4 idle, zone-b 2 idle + 2 slots."""
    config = FleetConfig(
        latency=latency or LatencyConfig(),
        pools=(
            Pool(prefix="a", count=4, state="idle", zone="zone-a"),
            Pool(prefix="b", count=2, state="idle", zone="zone-b"),
            Pool(prefix="bs", count=2, state="speculative", zone="zone-b"),
        ),
    )
    fleet = config.build(time.monotonic)
    server, port = await start_provider(fleet, "127.0.0.1:0")
    the_pair = Pair(fleet, f"127.0.0.1:{port}", tmp_path, {}, {})
    try:
        for shard_id in ("donor", "recipient"):
            await the_pair.start(shard_id, **settings)
        yield the_pair
    finally:
        for shard_id in list(the_pair.tasks):
            await the_pair.stop(shard_id)
        await server.stop(None)
    for shard in the_pair.shards.values():
        assert_writes_waited(shard)
