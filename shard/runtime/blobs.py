"""Where the executor gets a machine's join blob: the BlobSource seam.

A Bootstrap needs the cluster's join blob before Configure. In a running shard
the blob comes from the cluster's operator over its Session (`OperatorBlobs`);
the simulator, which has no operators, answers with a stub of its own. The
executor keeps the timeout, the metrics and the roll-back either way, so only
where the blob comes from differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bigfleet.shard.runtime.channels import Channels
from bigfleet.wire import capacity_pb2, shard_pb2


class BlobSource(Protocol):
    def ready(self, cluster: str) -> bool:
        """Whether a blob can be asked for now; False rolls the Bootstrap back (no_session)."""
        ...

    async def request(
        self, cluster: str, requirements: Sequence[capacity_pb2.NodeSelectorRequirement]
    ) -> shard_pb2.BootstrapBlobResponse:
        """The cluster's answer; cancelled by the executor's timeout when none comes."""
        ...


class OperatorBlobs:
    """Ask the cluster's operator: a BootstrapRequest on its channel, answered over the
    Session; the request stays pending (reissued on reconnect) until answered or cancelled."""

    def __init__(self, channels: Channels) -> None:
        self.channels = channels

    def ready(self, cluster: str) -> bool:
        return self.channels.get(cluster).connected

    async def request(
        self, cluster: str, requirements: Sequence[capacity_pb2.NodeSelectorRequirement]
    ) -> shard_pb2.BootstrapBlobResponse:
        return await self.channels.get(cluster).request_bootstrap(requirements)
