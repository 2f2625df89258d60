"""Wall-clock timestamps as Kubernetes writes them: RFC 3339, UTC, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime | None = None) -> str:
    """`2026-12-06T03:49:13Z` for `moment` (now when omitted); naive datetimes are UTC."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_unix_ns(unix_ns: int) -> str:
    """A wire timestamp in nanoseconds since the epoch, as RFC 3339."""
    return rfc3339(datetime.fromtimestamp(unix_ns / 1e9, UTC))
