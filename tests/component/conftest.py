"""Fixtures the component tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bigfleet.controlplane.etcd_cluster import EtcdCluster


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A real three-member etcd on loopback, one per test module (some tests kill members)."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    cluster.start()
    yield cluster
    cluster.stop()
