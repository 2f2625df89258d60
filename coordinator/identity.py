"""Who may call which Coordinator RPC under mutual TLS (ADR 0017).

Shards report; readonly and admin callers read the tables; only admin changes
them. The interceptor (`bigfleet.tls.RequireIdentity`) applies `policy` before
a handler runs; `ReportShard` then binds the caller to the report's shard id
(`reporter_mismatch`): a shard reports for itself only, and admin does not pass.
Plaintext servers skip all of it: no interceptor, no binding.
"""

from __future__ import annotations

from bigfleet.tls import Identity, Role

REPORT = frozenset({Role.SHARD})
READ = frozenset({Role.READONLY, Role.ADMIN})
ADMINISTER = frozenset({Role.ADMIN})


def policy(method: str) -> frozenset[Role]:
    """The roles `method` (the last part of its gRPC path) accepts.

    A read is any `List*` RPC; everything else (domain and shard writes, snapshots,
    membership, and any RPC added later) is admin's unless named here.
    """
    if method == "ReportShard":
        return REPORT
    if method.startswith("List"):
        return READ
    return ADMINISTER


def reporter_mismatch(caller: Identity | None, shard_id: str) -> str | None:
    """Why `caller` may not report for `shard_id`, or None when it may.

    Asked on mutual-TLS servers only, so no identity at all is refused too.
    """
    expected = Identity.shard(shard_id)
    if caller is None:
        return f"ReportShard for shard {shard_id!r} needs {expected}; the caller has no identity"
    if caller == expected:
        return None
    return (
        f"ReportShard for shard {shard_id!r} needs {expected}; the caller is {caller}: "
        "a shard reports for itself only"
    )
