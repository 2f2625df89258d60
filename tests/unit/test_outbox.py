"""The per-cluster outbox: coalescing keeps the newest, must-deliver frames are never dropped."""

from __future__ import annotations

import asyncio

from bigfleet.shard.runtime.outbox import Outbox
from bigfleet.wire import shard_pb2


def node(machine: str, state: int) -> shard_pb2.ShardMessage:
    return shard_pb2.ShardMessage(
        node_state_update=shard_pb2.NodeStateUpdate(
            supersedes_key=f"node:{machine}", machine_id=machine, state=state
        )
    )  # type: ignore[arg-type]


def bootstrap(request_id: str) -> shard_pb2.ShardMessage:
    return shard_pb2.ShardMessage(
        bootstrap_request=shard_pb2.BootstrapRequest(request_id=request_id)
    )


async def drain(outbox: Outbox) -> list[shard_pb2.ShardMessage]:
    return [await outbox.next() for _ in range(len(outbox))]


async def test_newest_frame_per_key_wins_and_moves_to_the_back() -> None:
    outbox = Outbox()
    outbox.put(node("m1", 3))
    outbox.put(bootstrap("r1"))
    outbox.put(node("m1", 5))
    frames = await drain(outbox)
    assert [f.WhichOneof("payload") for f in frames] == ["bootstrap_request", "node_state_update"]
    assert frames[1].node_state_update.state == 5


async def test_the_cap_evicts_oldest_coalescing_frames_never_requests() -> None:
    dropped: list[int] = []
    outbox = Outbox(cap=3, on_drop=lambda: dropped.append(1))
    for i in range(3):
        outbox.put(bootstrap(f"r{i}"))
    outbox.put(node("m1", 3))  # over the cap: the only coalescing frame goes
    outbox.put(node("m2", 3))
    outbox.put(bootstrap("r3"))  # over the cap with requests only: kept anyway
    frames = await drain(outbox)
    assert [f.bootstrap_request.request_id for f in frames] == ["r0", "r1", "r2", "r3"]
    assert len(dropped) == 2


async def test_next_waits_for_a_frame() -> None:
    outbox = Outbox()
    waiter = asyncio.create_task(outbox.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.put(bootstrap("r"))
    assert (await asyncio.wait_for(waiter, 1)).bootstrap_request.request_id == "r"
