"""Logs are one JSON object (or one text line) per record, stamped RFC 3339 UTC, and carry
the ids bound around them; kopf's per-handler lines are DEBUG."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kopf
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
    # Libraries attach objects of their own to records; the line must still be written.
    logging.getLogger("kopf.test").info("handler done", extra={"memo": object()})
    (record,) = _records(stream)
    assert record["message"] == "handler done"
    assert str(record["memo"]).startswith("<object object")


# -- time stamps, the text format, kopf's chatter ---------------------------------------------

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# 2026-12-06T02:31:54.125Z, as a LogRecord's `created` (a float of seconds).
MOMENT = datetime(2026, 12, 6, 2, 31, 54, 125_000, tzinfo=UTC)


def _record_at(moment: datetime, **fields: object) -> logging.LogRecord:
    created = moment.timestamp()
    return logging.makeLogRecord(
        {
            "name": "bigfleet.test",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "cycle done",
            "created": created,
            "msecs": (created - int(created)) * 1000,
            **fields,
        }
    )


def test_json_time_is_rfc3339_utc_with_milliseconds(stream: io.StringIO) -> None:
    logging.getLogger("bigfleet.test").handle(_record_at(MOMENT))
    logging.getLogger("bigfleet.test").info("now")
    at_moment, now = _records(stream)
    assert at_moment["time"] == "2026-12-06T02:31:54.125Z"
    assert RFC3339_MS.match(str(now["time"]))
    stamped = datetime.fromisoformat(str(now["time"]))
    assert stamped.utcoffset() == timedelta(0)


def test_text_lines_start_with_the_same_time_and_carry_the_fields() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.configure("INFO", buffer, fmt="text")
        with logs.bound(shard_id="shard-0"):
            logging.getLogger("bigfleet.test").handle(
                _record_at(MOMENT, reason="provider refused", machines=3)
            )
    finally:
        root.handlers[:], root.level = saved
    assert buffer.getvalue() == (
        '2026-12-06T02:31:54.125Z INFO bigfleet.test cycle done reason="provider refused" '
        "machines=3 shard_id=shard-0\n"
    )


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="yaml"):
        logs.configure("INFO", io.StringIO(), fmt="yaml")


def _kopf_logger() -> logging.LoggerAdapter[logging.Logger]:
    """kopf's own per-object logger, as its handlers get it (settings attached)."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "team"}}
    return kopf.ObjectLogger(body=kopf.Body(body), settings=kopf.OperatorSettings())


def test_kopf_handler_chatter_is_debug_and_hidden_at_info(stream: io.StringIO) -> None:
    kopf_log = _kopf_logger()
    kopf_log.info("Handler 'pods' succeeded.")
    kopf_log.info("Activity 'login' succeeded.")
    kopf_log.info("Patching failed with inconsistencies.")  # not chatter: stays INFO
    kopf_log.warning("Handler 'pods' failed temporarily: boom")
    kept = _records(stream)
    assert [(r["level"], r["message"]) for r in kept] == [
        ("INFO", "Patching failed with inconsistencies."),
        ("WARNING", "Handler 'pods' failed temporarily: boom"),
    ]
    # kopf's whole OperatorSettings rides on every record; the object it concerns stays.
    assert all("settings" not in r and "k8s_skip" not in r for r in kept)
    assert kept[0]["k8s_ref"] == {
        "apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": None, "namespace": "team",
    }  # fmt: skip


def test_kopf_handler_chatter_shows_at_debug() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.configure("DEBUG", buffer)
        _kopf_logger().info("Handler 'pods' succeeded.")
    finally:
        root.handlers[:], root.level = saved
    (record,) = _records(buffer)
    assert (record["level"], record["message"]) == ("DEBUG", "Handler 'pods' succeeded.")
