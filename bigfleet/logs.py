"""Structured JSON logs with context bound per session, cycle or RPC.

`configure()` is called once by the CLI. Code binds ids with
`with bound(cluster=..., shard_id=...):` and every record logged inside
carries them as JSON fields, including records from tasks started there
(context variables are copied into new asyncio tasks).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

# The ids a record may carry; the glossary names them.
CONTEXT_KEYS = ("cluster", "shard_id", "epoch", "machine_id", "operation_id")

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


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) as one JSON object per line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # Libraries (kopf) attach objects JSON cannot encode; their text still helps.
            json_default=str,
        )
    )
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request would drown everything else.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
