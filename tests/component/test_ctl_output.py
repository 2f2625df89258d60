"""`bigfleet ctl` prints the same rows as a table, as JSON and as YAML.

One coordinator replica on the embedded store, over real gRPC, with a shard
report and a domain in it; every listing is read in each format and parsed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import grpc
import pytest
import yaml
from click.testing import CliRunner, Result

from bigfleet.cli import main
from bigfleet.controlplane.process import free_port
from bigfleet.coordinator.app import CoordinatorSettings, run
from bigfleet.wire import coordinator_pb2 as pb
from bigfleet.wire import coordinator_pb2_grpc
from tests.support.waiting import until


@pytest.fixture
async def coordinator(tmp_path: Path) -> AsyncIterator[str]:
    """A leading replica holding shard-0's report (2 shortfalls) and one domain."""
    settings = CoordinatorSettings(
        replica_id="coord-out",
        data_dir=tmp_path / "coord",
        listen=f"127.0.0.1:{free_port()}",
        metrics_addr=f"127.0.0.1:{free_port()}",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop))
    async with grpc.aio.insecure_channel(settings.listen) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)

        async def reported() -> bool:
            if task.done():
                task.result()  # raise what ended it
            try:
                await stub.ReportShard(
                    pb.ShardReport(
                        shard_id="shard-0",
                        cycle=3,
                        shard_address="shard-0.shards:7780",
                        summary=pb.ShardSummary(
                            total_machines=10, free_machines=4, provider_address="fake:7800"
                        ),
                        shortfalls=[pb.Shortfall(priority=9), pb.Shortfall(priority=1)],
                    ),
                    timeout=2,
                )
            except grpc.aio.AioRpcError:
                return False
            return True

        await until(reported, "the coordinator leads and takes a report", timeout_s=30)
        await stub.AssignDomain(
            pb.AssignDomainRequest(topology_key="zone", topology_value="eu-1a", shard_id="shard-0")
        )
    try:
        yield settings.listen
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def ctl(address: str, *args: str) -> Result:
    argv = ["ctl", "--coordinator", address, *args]
    return await asyncio.to_thread(CliRunner().invoke, main, argv)


async def parsed(address: str, *args: str) -> object:
    """The command's rows as JSON, checked to be the same rows as its YAML."""
    as_json = await ctl(address, *args, "-o", "json")
    as_yaml = await ctl(address, *args, "--output", "yaml")
    assert as_json.exit_code == 0, as_json.output
    assert as_yaml.exit_code == 0, as_yaml.output
    rows = json.loads(as_json.stdout)
    assert yaml.safe_load(as_yaml.stdout) == rows
    return rows


async def test_every_listing_prints_the_same_rows_as_json_and_yaml(coordinator: str) -> None:
    (shard,) = await parsed(coordinator, "list-shards")  # type: ignore[misc]
    assert shard["shard_id"] == "shard-0" and shard["address"] == "shard-0.shards:7780"
    for key in ("registered_at", "last_heartbeat_at"):
        assert shard[key].endswith("Z")
        datetime.fromisoformat(shard[key])  # RFC 3339, a string in YAML as in JSON

    assert await parsed(coordinator, "list-shard-reports") == [
        {
            "shard_id": "shard-0",
            "cycle": 3,
            "received_at": shard["last_heartbeat_at"],
            "total_machines": 10,
            "free_machines": 4,
            "shortfall_count": 2,
        }
    ]
    assert await parsed(coordinator, "list-shard-reports", "--shard", "shard-9") == []
    assert await parsed(coordinator, "list-domain-assignments") == [
        {"topology_key": "zone", "topology_value": "eu-1a", "shard_id": "shard-0"}
    ]
    assert await parsed(coordinator, "list-providers") == [
        {"name": "fake:7800", "address": "fake:7800", "region": ""}
    ]
    assert await parsed(coordinator, "list-quotas") == []  # no rebalancing move yet


async def test_the_table_stays_the_default_with_a_dash_for_empty_cells(coordinator: str) -> None:
    providers = await ctl(coordinator, "list-providers")
    assert providers.exit_code == 0, providers.output
    header, row = providers.stdout.splitlines()
    assert header.split() == ["NAME", "ADDRESS", "REGION"]
    assert row.split() == ["fake:7800", "fake:7800", "—"]
    reports = await ctl(coordinator, "list-shard-reports", "-o", "table")
    row = reports.stdout.splitlines()[1].split()
    assert row[:2] == ["shard-0", "3"] and row[3:] == ["10", "4", "2"]


async def test_an_unknown_output_format_is_a_usage_error_naming_the_flag() -> None:
    for hostile in ("xml", "JSON ", "", "json;rm -rf /"):
        # Refused before any call: nothing listens at the address.
        result = await ctl(f"127.0.0.1:{free_port()}", "list-shards", "-o", hostile)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '-o' / '--output'" in result.stderr
        assert result.stdout == ""


async def test_a_refused_call_still_exits_1_on_stderr_with_nothing_to_parse() -> None:
    address = f"127.0.0.1:{free_port()}"  # nobody listens
    result = await ctl(address, "--timeout", "5", "list-shards", "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no coordinator took the call" in result.stderr
