"""The BigFleet custom resources: kr8s kinds, typed spec/status models, the CRD manifests."""

from bigfleet.crd.kinds import (
    API_VERSION,
    GROUP,
    KINDS,
    VERSION,
    AvailableCapacity,
    CapacityRequest,
    Shard,
    UpcomingNode,
)
from bigfleet.crd.manifests import crd_dir, load_crds

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "AvailableCapacity",
    "CapacityRequest",
    "Shard",
    "UpcomingNode",
    "crd_dir",
    "load_crds",
]
