"""ShardSettings: everything one shard process is configured with (`bigfleet shard`'s flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bigfleet import tls
from bigfleet.shard.codec import MAX_NEEDS_PER_ROLLUP
from bigfleet.shard.engine.settings import EngineSettings
from bigfleet.shard.runtime.channels import (
    DEFAULT_MAX_CLUSTERS,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_RETENTION_S,
)
from bigfleet.tls import Credentials, Identity, TLSFiles


@dataclass(frozen=True, kw_only=True)
class ShardSettings:
    shard_id: str
    listen: str = "127.0.0.1:7780"
    providers: tuple[tuple[str, str], ...] = ()
    data_dir: Path = Path("./data")
    metrics_addr: str = "127.0.0.1:8780"  # "0" disables the HTTP listener
    cycle_interval_s: float = 10.0
    min_cycle_gap_s: float = 1.0
    execute_concurrency: int = 8
    bootstrap_timeout_s: float = 30.0
    execute_timeout_s: float = 30.0
    # The decision engine's tunables and rails (idle holds, victim weights, reclaim grace...).
    engine: EngineSettings = field(default_factory=EngineSettings)
    empty_rollup_guard: bool = True
    outbox_cap: int = 1024
    # What one operator can make the shard hold (docs/shard.md, "Limits and refusals"):
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES  # a larger frame ends its stream
    max_clusters: int = DEFAULT_MAX_CLUSTERS  # a Hello for one more is RESOURCE_EXHAUSTED
    cluster_retention_s: float = DEFAULT_RETENTION_S  # then a gone cluster's state is dropped
    max_needs_per_rollup: int = MAX_NEEDS_PER_ROLLUP  # a longer roll-up is refused whole
    allowed_clusters: frozenset[str] = frozenset()
    incremental_reconcile: bool = False
    transfer_batch: int = 8  # machines handed to another shard per coordinator instruction
    advertise: str = ""  # the address reported to the coordinator; default: listen
    # Comma-separated coordinator replicas; empty: the shard runs on its own.
    coordinator_addr: str = ""
    coordinator_heartbeat_s: float = 10.0
    # Publish the Shard resource and apply its spec, with this kubeconfig or (in_cluster)
    # as kubectl finds the API server, the pod's service account last; neither: no resource.
    kubeconfig: str | None = None
    in_cluster: bool = False
    # Mutual TLS on every edge (Session server, provider and coordinator dials); None: plaintext.
    tls: TLSFiles | None = None


class ShardIdentityError(ValueError):
    """The shard's TLS files cannot serve it: unreadable, or naming another identity."""


def load_credentials(settings: ShardSettings) -> Credentials | None:
    """The shard's one set of credentials, for its server and its dials; None: plaintext.

    Providers bind a fencing token's shard id, and the coordinator a report's, to the
    caller's certificate, so a certificate for another identity is refused at start.
    """
    if settings.tls is None:
        return None
    try:
        credentials = tls.load(settings.tls)
    except (OSError, ValueError) as err:
        raise ShardIdentityError(f"cannot load the shard's TLS files: {err}") from err
    assert credentials is not None
    expected = Identity.shard(settings.shard_id)
    if credentials.identity != expected:
        presented = credentials.identity or "no bigfleet:// identity"
        raise ShardIdentityError(
            f"{settings.tls.cert} names {presented}, but this is shard {settings.shard_id!r}: "
            f"its certificate must name {expected} (providers and the coordinator bind on it)"
        )
    return credentials
