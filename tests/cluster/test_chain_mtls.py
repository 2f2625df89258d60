"""The whole chain with mutual TLS on every gRPC edge, each process with its own identity.

Operator -> shard, shard -> provider, shard -> coordinator and ctl -> coordinator
all present certificates from `bigfleet certs init` (bigfleet/controlplane/chain.py,
`mtls=True`); an unschedulable Pod still ends up bound, and the edges refuse
callers without the right identity.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Pod

from bigfleet.controlplane.chain import Chain, pod_manifest
from tests.support import identities
from tests.support.waiting import until

FLEET: dict[str, object] = {
    "latency": {"creating": 0.5, "configuring": 0.5},
    "pools": [{"prefix": "idle", "count": 1, "state": "idle"}],
}


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    the_chain = Chain(
        tmp_path / "chain",
        FLEET,
        shard_args=("--cycle-interval", "0.5"),
        coordinator=True,
        mtls=True,
    )
    the_chain.start()
    yield the_chain
    the_chain.stop()


def _ctl(chain: Chain, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bigfleet.cli", "ctl", "--coordinator", chain.coordinator_address,
         *args, "list-shards"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_a_pod_is_bound_with_mutual_tls_on_every_edge(chain: Chain) -> None:
    api = await kr8s.asyncio.api(kubeconfig=str(chain.control_plane.kubeconfig_path))
    await Pod(pod_manifest("secure-0", "3"), api=api).create()

    async def bound() -> bool | None:
        pod = await Pod.get("secure-0", namespace="default", api=api)
        return bool(pod.raw["spec"].get("nodeName")) or None

    await until(bound, "the pod bound to a node that joined over mTLS", 120)

    # The shard reported to the coordinator over mTLS as itself: an admin sees it.
    assert chain.certs is not None

    def listed() -> bool | None:
        result = _ctl(chain, *identities.flags(chain.certs, "admin"))
        return ("shard-0" in result.stdout) or None

    await until(lambda: asyncio.to_thread(listed), "shard-0 registered at the coordinator", 60)
    # Without a certificate the coordinator answers nobody.
    refused = _ctl(chain)
    assert refused.returncode != 0
    assert "shard-0" not in refused.stdout
