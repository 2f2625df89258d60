"""The Lease lock's pure parts: when a candidate may take over, and its settings."""

from __future__ import annotations

import pytest

from bigfleet import leader
from bigfleet.leader import LeaseLock, Record, expired


def test_a_lease_is_taken_over_only_when_free_or_unchanged_past_its_duration() -> None:
    held = Record(
        holder="op-a_1", renewed="2026-12-06T20:00:00.000000Z", duration_s=15, transitions=0
    )
    assert not expired(held, seen_at=100.0, now=110.0)  # renewed 10 s ago as far as we saw
    assert expired(held, seen_at=100.0, now=115.5)  # unchanged for longer than 15 s
    released = Record(holder="", renewed=held.renewed, duration_s=1, transitions=0)
    assert expired(released, seen_at=100.0, now=100.0)  # a clean stop frees it at once


def test_a_lease_record_reads_what_the_api_server_stores() -> None:
    lease = {"spec": {"holderIdentity": "op-b_2", "renewTime": "t", "leaseDurationSeconds": 15,
                      "leaseTransitions": 3}}  # fmt: skip
    assert Record.of(lease) == Record("op-b_2", "t", 15, 3)
    assert Record.of({}) == Record("", "", 0, 0)


def test_the_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease duration"):
        LeaseLock(None, namespace="d", name="n", identity="i", lease_s=10, renew_deadline_s=10)  # type: ignore[arg-type]


def test_identities_differ_per_process_and_name_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "operator-7f9c")
    first, second = leader.default_identity(), leader.default_identity()
    assert first.startswith("operator-7f9c_") and first != second
    monkeypatch.setenv("POD_NAMESPACE", "bigfleet-system")
    assert leader.default_namespace() == "bigfleet-system"
