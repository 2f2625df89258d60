"""A real, local Kubernetes control plane (etcd + kube-apiserver) run from cached binaries.

The cluster test tier and the chain benchmark use it where no Docker engine
exists; the binaries come from scripts/build-control-plane.sh.
"""

from bigfleet.controlplane.binaries import KUBE_VERSION, BinariesMissing, find_binaries
from bigfleet.controlplane.cluster import LocalControlPlane

__all__ = ["KUBE_VERSION", "BinariesMissing", "LocalControlPlane", "find_binaries"]
