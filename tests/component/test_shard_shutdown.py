"""A shard stops cleanly while its calls hang: a provider that takes calls and never
answers holds up neither SIGTERM's exit 0 nor its operators' UNAVAILABLE."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest

from bigfleet.controlplane.process import free_port, http_ok
from bigfleet.wire import shard_pb2, shard_pb2_grpc
from tests.support.processes import bigfleet, stop
from tests.support.waiting import until


class SilentProvider(grpc.GenericRpcHandler):
    """Takes every call and answers none of them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        self.calls.append(details.method)

        async def never(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await asyncio.Event().wait()
            return b""

        return grpc.unary_unary_rpc_method_handler(never)


async def test_sigterm_ends_a_shard_whose_provider_never_answers(tmp_path: Path) -> None:
    provider = SilentProvider()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([provider])
    provider_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port, metrics = free_port(), free_port()
    args = ["shard", "--id", "shard-silent", "--listen", f"127.0.0.1:{port}",
            "--provider", f"silent=127.0.0.1:{provider_port}", "--data-dir", str(tmp_path / "d"),
            "--metrics-port", str(metrics)]  # fmt: skip
    log = tmp_path / "log"
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        with bigfleet(args, log) as process:
            await until(lambda: http_ok(f"http://127.0.0.1:{metrics}/metrics"), "shard serving")
            await until(lambda: provider.calls, "a provider call in flight")
            hello = shard_pb2.OperatorMessage(
                hello=shard_pb2.Hello(cluster_id="c1", protocol_version="v1")
            )

            async def frames():  # type: ignore[no-untyped-def]
                yield hello
                await asyncio.Event().wait()  # the operator keeps its side open

            call = shard_pb2_grpc.ShardStub(channel).Session(frames())
            assert (await call.read()).WhichOneof("payload") == "ack"

            code = await asyncio.to_thread(stop, process, signal.SIGTERM)
            text = log.read_text()
            assert code == 0, text[-3000:]
            # It wound down on its own: the shutdown timeout never had to cancel anything.
            assert "shutdown timeout ran out" not in text, text[-3000:]
            with pytest.raises(grpc.aio.AioRpcError) as ended:  # never an OK end
                while await call.read() is not grpc.aio.EOF:
                    pass
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ended.value.details() == "the shard is stopping; dial again"
    finally:
        await channel.close()
        await server.stop(grace=None)
