"""Structured logs with context bound per session, cycle or RPC.

`configure()` is called once by the CLI. Code binds ids with
`with bound(cluster=..., shard_id=...):` and every record logged inside
carries them as fields, including records from tasks started there
(context variables are copied into new asyncio tasks).

Records are one JSON object per line by default, or one `key=value` line for
a person reading a terminal; both stamp the time as RFC 3339 UTC with
milliseconds (`2026-12-06T02:31:54.125Z`), the form log stores parse without
a hint and Kubernetes writes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# The ids a record may carry; the glossary names them.
CONTEXT_KEYS = ("cluster", "shard_id", "epoch", "machine_id", "operation_id")

FORMATS = ("json", "text")

# kopf attaches these to every record of an object it handles: `settings` is its whole
# OperatorSettings (pages of text per line) and `k8s_skip` steers its Event poster.
# `k8s_ref` (which object) stays: it is the useful part.
_KOPF_INTERNALS = frozenset({"settings", "k8s_skip"})
# Attributes every LogRecord has; anything else on a record is a field passed in `extra`.
_STANDARD = frozenset(RESERVED_ATTRS) | {"taskName", "message", "asctime"}

# kopf reports every handler call at INFO ("Handler 'pod' succeeded.", once per watch
# event per object); its fixed phrasing is the only handle kopf offers on it.
_KOPF_CHATTER = re.compile(r"^\w+ '[^']*' (?:succeeded|is invoked)\.$")

_context: ContextVar[Mapping[str, object]] = ContextVar(
    "bigfleet_log_context", default=MappingProxyType({})
)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Attach `fields` to every record logged in this context."""
    unknown = fields.keys() - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"unknown log context keys: {sorted(unknown)}")
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, value)
        return True


class _KopfChatterFilter(logging.Filter):
    """Moves kopf's per-handler lines to DEBUG.

    It runs on the handler, after the logger passed the line at INFO, so a demoted line
    is kept only where its logger would have let a DEBUG line through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.INFO
            and record.name.startswith("kopf")
            and _KOPF_CHATTER.match(record.getMessage())
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class _UTCTime(logging.Formatter):
    """Stamps records RFC 3339 UTC with milliseconds; `datefmt` does not apply."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


class _JsonLines(_UTCTime, JsonFormatter):
    pass


class _TextLines(_UTCTime):
    """`TIME LEVEL LOGGER message key=value ...`; the fields the JSON form would carry."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = "".join(
            f" {key}={_text(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and key not in _KOPF_INTERNALS
        )
        return super().formatMessage(record) + fields


def _text(value: object) -> str:
    """A field value that stays one token: quoted when it has spaces, quotes or `=`."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not re.search(r"[\s\"=]", text):
        return text
    return json.dumps(text, ensure_ascii=False)


def configure(level: str = "INFO", stream: TextIO | None = None, fmt: str = "json") -> None:
    """Send every log record to `stream` (stderr), one line each, in `fmt` (FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            _JsonLines(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                reserved_attrs=[*RESERVED_ATTRS, *_KOPF_INTERNALS],
                # Libraries attach objects JSON cannot encode; their text still helps.
                json_default=str,
            )
        )
    else:
        handler.setFormatter(_TextLines("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(_ContextFilter())
    handler.addFilter(_KopfChatterFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request would drown everything else.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
