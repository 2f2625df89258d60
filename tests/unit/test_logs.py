"""Logs are one JSON object per line and carry the ids bound around them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from bigfleet import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    logs.configure("INFO", buffer)
    yield buffer
    root.handlers[:], root.level = saved


def _records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_records_are_json_with_level_logger_and_message(stream: io.StringIO) -> None:
    logging.getLogger("bigfleet.test").warning("machine failed", extra={"reason": "timeout"})
    (record,) = _records(stream)
    assert record["level"] == "WARNING"
    assert record["logger"] == "bigfleet.test"
    assert record["message"] == "machine failed"
    assert record["reason"] == "timeout"
    assert "time" in record


def test_bound_ids_ride_on_every_record_inside_and_none_after(stream: io.StringIO) -> None:
    log = logging.getLogger("bigfleet.test")
    with logs.bound(shard_id="shard-0", epoch=4):
        with logs.bound(machine_id="m-1"):
            log.info("cycle done")
        log.info("session opened")
    log.info("outside")
    inner, middle, outside = _records(stream)
    assert (inner["shard_id"], inner["epoch"], inner["machine_id"]) == ("shard-0", 4, "m-1")
    assert "machine_id" not in middle and middle["shard_id"] == "shard-0"
    assert "shard_id" not in outside


def test_tasks_started_inside_a_binding_keep_it(stream: io.StringIO) -> None:
    async def work() -> None:
        logging.getLogger("bigfleet.test").info("in task")

    async def main() -> None:
        with logs.bound(cluster="c-9"):
            task = asyncio.create_task(work())
        await task

    asyncio.run(main())
    (record,) = _records(stream)
    assert record["cluster"] == "c-9"


def test_unknown_context_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="node"), logs.bound(node="n-1"):
        pass


def test_records_with_objects_json_cannot_encode_still_log(stream: io.StringIO) -> None:
    # kopf attaches its settings objects to records; the line must still be written.
    logging.getLogger("kopf.test").info("handler done", extra={"settings": object()})
    (record,) = _records(stream)
    assert record["message"] == "handler done"
    assert str(record["settings"]).startswith("<object object")
