"""`bigfleet bench fuzz`: random and adversarial operator frames against a real shard.

The generators here are shared with `tests/component/test_fuzz_frames.py` (hypothesis
drives them through a `random.Random`); the bench runs them for a while and counts
streams by final status. The target is a real ShardService on the fake provider over
real gRPC. Every roll-up a fuzzer sends is pinned to an instance type no machine has,
so an accepted one cannot move a machine either: the provider's machines must not
change at all while fuzzing, and a well-behaved operator must still get one after.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bigfleet.providers_fake.config import FleetConfig
from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.providers_fake.server import start as start_provider
from bigfleet.shard.engine.settings import EngineSettings, RailSettings
from bigfleet.shard.runtime.service import ShardService, ShardSettings
from bigfleet.wire import GRPC_OPTIONS, capacity_pb2, provider_pb2, shard_pb2

SESSION = "/bigfleet.v1alpha1.Shard/Session"
TYPE_KEY = "node.kubernetes.io/instance-type"
NO_SUCH_TYPE = "fuzz.none"  # no machine has it: accepted fuzz demand binds nothing
GOOD_TYPE = "m6i.2xlarge"  # the fake's default shape
FRAME_LIMIT = 64 * 1024  # the target's --max-frame-bytes: oversized frames stay cheap

Msg = shard_pb2.OperatorMessage
Need = capacity_pb2.CapacityNeed
Req = capacity_pb2.NodeSelectorRequirement


@dataclass(frozen=True)
class Frame:
    kind: str  # what the generator meant to send, for reports
    data: bytes


# -- generators ---------------------------------------------------------------------------


def _text(rng: random.Random, longest: int = 40) -> str:
    alphabet = "abcXYZ-._/ 0189é\x00\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def _quantity(rng: random.Random) -> str:
    return rng.choice(
        [
            "8",
            "500m",
            "32Gi",
            "-1",
            "0",
            "1e308",
            "9" * rng.randint(20, 400),
            "NaN",
            "inf",
            "1.5.5",
            "",
            "12Qi",
            "0x10",
            _text(rng, 12),
            "1" + "0" * 30 + "Ei",
        ]
    )


def _need(rng: random.Random, adversarial: bool) -> Need:
    pin = Req(key=TYPE_KEY, operator=Req.OPERATOR_IN, values=[NO_SUCH_TYPE])
    need = Need(
        requirements=[pin],
        aggregate_resources={"cpu": str(8 * rng.randint(1, 4))},
        min_unit={"cpu": "8"},
        priority=rng.randint(0, 1000),
    )
    if not adversarial:
        return need
    for _ in range(rng.randint(1, 3)):
        attack = rng.randrange(9)
        if attack == 0:
            need.aggregate_resources[rng.choice(["cpu", "memory", _text(rng, 8)])] = _quantity(rng)
        elif attack == 1:
            need.min_unit[rng.choice(["cpu", "memory"])] = _quantity(rng)
        elif attack == 2:
            need.priority = rng.choice([-(2**31), -1, 2**31 - 1, 10**9])
        elif attack == 3:
            need.interruption_penalty_bucket = rng.choice([-1, 28, 99, 2**31 - 1])  # type: ignore[assignment]
        elif attack == 4:
            need.requirements.append(
                Req(key=_text(rng), operator=rng.choice([0, 7, 99, -3]), values=[_text(rng)])  # type: ignore[arg-type]
            )
        elif attack == 5:
            need.requirements.append(
                Req(key="x" * rng.randint(64, 4000), operator=Req.OPERATOR_EXISTS)
            )
        elif attack == 6:
            need.group = "g" * rng.randint(1, 8000)
        elif attack == 7:
            need.spread.append(
                capacity_pb2.TopologySpread(
                    topology_key=_text(rng),
                    max_skew=rng.choice([-5, 0, 2**31 - 1]),
                    when_unsatisfiable=rng.choice([0, 1, 2, 77]),  # type: ignore[arg-type]
                )
            )
        else:
            need.requirements[0].values.extend(_text(rng) for _ in range(rng.randint(1, 50)))
    return need


def _rollup(rng: random.Random, cluster: str, adversarial: bool) -> Msg:
    return Msg(
        rollup=capacity_pb2.ClusterCapacityNeeds(
            cluster_id=cluster,
            timestamp_unix_nanos=rng.choice([time.time_ns(), 0, -1, 2**63 - 1]),
            needs=[_need(rng, adversarial) for _ in range(rng.randint(0, 4))],
        )
    )


def _garbage(rng: random.Random, valid: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    if choice == 1 and len(valid) > 1:
        return valid[: rng.randrange(1, len(valid))]  # truncated
    if choice == 2:
        return b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 10  # a length beyond the frame
    if choice == 3:
        return b"\x08" + b"\xff" * 11  # an over-long varint
    return b"\x0b" * rng.randint(1, 50)  # deprecated groups, unterminated


def frame(rng: random.Random, cluster: str) -> Frame:
    """One frame for an open stream of `cluster`: valid, field-adversarial or garbage."""
    pick = rng.randrange(14)
    if pick <= 2:
        return Frame("rollup", _rollup(rng, cluster, False).SerializeToString())
    if pick <= 5:
        return Frame("adversarial_rollup", _rollup(rng, cluster, True).SerializeToString())
    if pick == 6:
        hello = Msg(hello=shard_pb2.Hello(cluster_id=cluster, protocol_version=_text(rng)))
        return Frame("hello_again", hello.SerializeToString())
    if pick == 7:
        other = rng.choice([cluster + "-other", "", "UPPER", "x" * 300])
        return Frame(
            "hello_other_cluster", Msg(hello=shard_pb2.Hello(cluster_id=other)).SerializeToString()
        )
    if pick == 8:
        other = rng.choice([cluster + "-other", "", "Bad_Id"])
        return Frame("rollup_other_cluster", _rollup(rng, other, False).SerializeToString())
    if pick == 9:
        answer = shard_pb2.BootstrapBlobResponse(
            request_id=_text(rng), user_data=os.urandom(rng.randint(0, 64)), ttl_seconds=-1
        )
        return Frame("bootstrap_response", Msg(bootstrap_response=answer).SerializeToString())
    if pick == 10:
        ack = shard_pb2.ReclaimAck(instruction_id=_text(rng))
        return Frame("reclaim_ack", Msg(reclaim_ack=ack).SerializeToString())
    if pick == 11:
        return Frame("empty", b"")  # an OperatorMessage with no payload
    if pick == 12:
        huge = Msg(hello=shard_pb2.Hello(cluster_id=cluster, protocol_version="v" * FRAME_LIMIT))
        return Frame("oversized", huge.SerializeToString())
    return Frame("garbage", _garbage(rng, _rollup(rng, cluster, False).SerializeToString()))


def first_frame(rng: random.Random, cluster: str) -> Frame:
    """What opens a stream: mostly a good Hello, else the ways a Hello can be wrong."""
    pick = rng.randrange(10)
    if pick <= 5:
        hello = Msg(hello=shard_pb2.Hello(cluster_id=cluster, protocol_version="v1alpha1"))
        return Frame("hello", hello.SerializeToString())
    if pick == 6:
        bad = rng.choice(["", "UPPER", "under_score", "a" * 254, "-x", "é", "a..b", _text(rng)])
        return Frame("bad_hello", Msg(hello=shard_pb2.Hello(cluster_id=bad)).SerializeToString())
    if pick == 7:
        return Frame("no_hello", _rollup(rng, cluster, False).SerializeToString())
    return frame(rng, cluster)


def sequence(rng: random.Random, cluster: str, longest: int = 8) -> list[Frame]:
    """A stream's frames: an opening, then up to `longest` more."""
    return [first_frame(rng, cluster)] + [
        frame(rng, cluster) for _ in range(rng.randint(0, longest))
    ]


def acked(data: bytes) -> bool:
    """Whether an accepted frame is acknowledged (Hello and roll-up frames are)."""
    try:
        message = Msg.FromString(data)
    except Exception:
        return False
    return message.WhichOneof("payload") in ("hello", "rollup")


# -- the target ---------------------------------------------------------------------------


@dataclass
class Outcome:
    status: grpc.StatusCode | None  # None: still open, every frame acknowledged
    acks: int
    frames: int  # written before the stream ended (probes not counted)
    hung: bool = False  # neither acknowledged nor ended within the timeout


def machines(fleet: FakeFleet) -> list[tuple[str, int, str]]:
    return sorted((m.id, m.state, m.cluster) for m in fleet.list().machines)


@dataclass
class Target:
    fleet: FakeFleet
    provider: grpc.aio.Server
    shard: ShardService
    task: asyncio.Task[None]
    channel: grpc.aio.Channel

    @classmethod
    async def start(cls, data_dir: Path, idle: int = 2, **overrides: object) -> Target:
        fleet = FleetConfig().with_quick_seeds(idle, 0).build(time.monotonic)
        provider, port = await start_provider(fleet, "127.0.0.1:0")
        fields: dict[str, object] = {
            "shard_id": "shard-fuzz",
            "listen": "127.0.0.1:0",
            "providers": (("fake", f"127.0.0.1:{port}"),),
            "data_dir": data_dir,
            "metrics_addr": "0",
            "cycle_interval_s": 0.2,
            "min_cycle_gap_s": 0.05,
            "bootstrap_timeout_s": 2.0,
            "engine": EngineSettings(rails=RailSettings(reclaim_cap_fraction=0)),
            "max_frame_bytes": FRAME_LIMIT,
        }
        shard = ShardService(ShardSettings(**(fields | overrides)))  # type: ignore[arg-type]
        started = asyncio.Event()
        task = asyncio.create_task(shard.run(started))
        await asyncio.wait_for(started.wait(), 10)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{shard.port}", options=GRPC_OPTIONS)
        return cls(fleet, provider, shard, task, channel)

    async def stop(self) -> None:
        await self.channel.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.provider.stop(None)

    @property
    def alive(self) -> bool:
        return not self.task.done()

    async def cycling(self, timeout_s: float = 10.0) -> bool:
        """Whether the shard completes another cycle within the timeout."""
        before = self.shard.cycles
        deadline = time.monotonic() + timeout_s
        while self.shard.cycles <= before and time.monotonic() < deadline and self.alive:
            await asyncio.sleep(0.02)
        return self.shard.cycles > before

    async def play(self, frames: list[Frame], timeout_s: float = 10.0) -> Outcome:
        """Send the frames on one stream as raw bytes, each followed by a probe (a Hello for
        the stream's own cluster) and sent only once everything before it is acknowledged:
        an open stream acknowledges every Hello and roll-up in order, so a stream either
        acknowledges all of it or ends with a status, and no frame is written after the
        shard ended the call (a write racing the end makes the client report INTERNAL)."""
        opening = _hello_cluster(frames[0].data) if frames else ""
        probe = Msg(hello=shard_pb2.Hello(cluster_id=opening)).SerializeToString()
        call = self.channel.stream_stream(
            SESSION,
            request_serializer=lambda b: b,  # garbage goes out as is
            response_deserializer=shard_pb2.ShardMessage.FromString,
        )()
        acks = 0
        status: grpc.StatusCode | None = None
        progress = asyncio.Event()

        async def read() -> None:
            nonlocal acks, status
            try:
                async for message in call:
                    if message.WhichOneof("payload") == "ack":
                        acks += 1
                        progress.set()
                status = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                status = err.code()
            finally:
                progress.set()

        reader = asyncio.create_task(read())
        deadline = time.monotonic() + timeout_s
        expected = sent = 0
        hung = False
        for number, f in enumerate(frames):
            sends = [f.data] if number == 0 or not opening else [f.data, probe]
            try:
                for data in sends:
                    await call.write(data)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                break
            sent += 1
            expected += sum(acked(d) for d in sends)
            if not opening:
                expected += 1  # never comes: the stream must end instead
            while acks < expected and not reader.done():
                progress.clear()
                try:
                    await asyncio.wait_for(progress.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    hung = True
                    break
            if hung or reader.done():
                break
        if not hung and not reader.done() and not frames:
            await call.done_writing()
            await asyncio.wait({reader}, timeout=max(0.0, deadline - time.monotonic()))
        call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        return Outcome(status, acks, sent, hung)

    async def serve_good(self, cluster: str = "well-behaved", timeout_s: float = 15.0) -> bool:
        """A well-behaved operator asks for one machine: is one Configured for it in time?"""
        outgoing: asyncio.Queue[Msg | None] = asyncio.Queue()
        outgoing.put_nowait(Msg(hello=shard_pb2.Hello(cluster_id=cluster, protocol_version="v1")))
        pin = Req(key=TYPE_KEY, operator=Req.OPERATOR_IN, values=[GOOD_TYPE])
        need = Need(
            requirements=[pin], aggregate_resources={"cpu": "8"}, min_unit={"cpu": "8"}, priority=1
        )
        outgoing.put_nowait(
            Msg(
                rollup=capacity_pb2.ClusterCapacityNeeds(
                    cluster_id=cluster, timestamp_unix_nanos=time.time_ns(), needs=[need]
                )
            )
        )

        async def requests() -> AsyncIterator[Msg]:
            while (message := await outgoing.get()) is not None:
                yield message

        call = self.channel.stream_stream(
            SESSION,
            request_serializer=Msg.SerializeToString,
            response_deserializer=shard_pb2.ShardMessage.FromString,
        )(requests())

        async def answer() -> None:
            async for message in call:
                if message.WhichOneof("payload") == "bootstrap_request":
                    request_id = message.bootstrap_request.request_id
                    outgoing.put_nowait(
                        Msg(
                            bootstrap_response=shard_pb2.BootstrapBlobResponse(
                                request_id=request_id, user_data=b"join", ttl_seconds=600
                            )
                        )
                    )

        answering = asyncio.create_task(answer())
        deadline = time.monotonic() + timeout_s
        served = False
        while time.monotonic() < deadline and not served:
            served = any(
                m.state == provider_pb2.MACHINE_STATE_CONFIGURED and m.cluster == cluster
                for m in self.fleet.list().machines
            )
            await asyncio.sleep(0.05)
        outgoing.put_nowait(None)
        call.cancel()
        answering.cancel()
        await asyncio.gather(answering, return_exceptions=True)
        return served


def _hello_cluster(data: bytes) -> str:
    try:
        message = Msg.FromString(data)
    except Exception:
        return ""
    return message.hello.cluster_id if message.WhichOneof("payload") == "hello" else ""


# -- the bench ----------------------------------------------------------------------------


def rss_bytes() -> int:
    """The process's resident set now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class FuzzReport:
    seconds: float
    seed: int
    streams: int
    frames_sent: int  # written before their stream ended, probes not counted
    frames_by_kind: dict[str, int]
    streams_by_status: dict[str, int]  # "open" for streams still open with every ack
    hung: int  # streams neither acknowledged nor ended: must be 0
    ended_ok: int  # streams a client's frames ended with OK: must be 0
    crashes: int  # the shard task ended or stopped cycling: must be 0
    machines_changed: bool  # the provider's machines moved while fuzzing: must be False
    well_behaved_served: bool
    clusters_known: int
    rss_before_mb: float
    rss_after_mb: float

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


async def _run(
    seconds: float, seed: int, concurrency: int, progress: Callable[[int], None]
) -> FuzzReport:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bigfleet-fuzz-") as tmp:
        # A short retention: a long run opens far more clusters than the cap, and the
        # sweep has to keep forgetting them for the shard to stay bounded.
        target = await Target.start(Path(tmp), cluster_retention_s=2.0, max_clusters=2_000)
        try:
            before = machines(target.fleet)
            rss_before = rss_bytes()
            kinds: Counter[str] = Counter()
            statuses: Counter[str] = Counter()
            hung = streams = sent = 0
            crashes = 0
            numbers = iter(range(10**9))
            deadline = time.monotonic() + seconds

            async def one() -> None:
                nonlocal hung, streams, sent
                frames = sequence(rng, f"fuzz-{next(numbers)}")
                kinds.update(f.kind for f in frames)
                outcome = await target.play(frames)
                streams += 1
                sent += outcome.frames
                hung += outcome.hung
                statuses["open" if outcome.status is None else outcome.status.name] += 1
                progress(streams)

            while time.monotonic() < deadline and target.alive:
                await asyncio.gather(*(one() for _ in range(concurrency)))
            if not target.alive or not await target.cycling():
                crashes = 1
            changed = machines(target.fleet) != before
            rss_after = rss_bytes()
            served = await target.serve_good()
            return FuzzReport(
                seconds=seconds,
                seed=seed,
                streams=streams,
                frames_sent=sent,
                frames_by_kind=dict(kinds.most_common()),
                streams_by_status=dict(statuses.most_common()),
                hung=hung,
                ended_ok=statuses.get("OK", 0),
                crashes=crashes,
                machines_changed=changed,
                well_behaved_served=served,
                clusters_known=len(target.shard.channels),
                rss_before_mb=round(rss_before / 2**20, 1),
                rss_after_mb=round(rss_after / 2**20, 1),
            )
        finally:
            await target.stop()


def run(
    seconds: float, seed: int = 1, concurrency: int = 4, progress: Callable[[int], None] = print
) -> FuzzReport:
    return asyncio.run(_run(seconds, seed, concurrency, progress))
