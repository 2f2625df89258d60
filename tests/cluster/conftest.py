"""The cluster tier: a real etcd + kube-apiserver for the whole session, CRDs applied.

Binaries come from scripts/build-control-plane.sh (the test command runs it).
Each test gets its own namespace.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Namespace

from bigfleet.controlplane import BinariesMissing, LocalControlPlane, find_binaries
from bigfleet.crd import crd_dir

if TYPE_CHECKING:
    from tests.cluster.test_charts import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The helm the control-plane build made (the chart tests fail, not skip, without it)."""
    from tests.cluster.test_charts import Helm

    binary = find_binaries() / "helm"
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"helm not found at {binary}: run scripts/build-control-plane.sh, which builds it",
            pytrace=False,
        )
    return Helm(binary, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    try:
        cluster = LocalControlPlane(tmp_path_factory.mktemp("control-plane"))
    except BinariesMissing as err:
        pytest.fail(f"cluster tier needs the control-plane binaries: {err}", pytrace=False)
    previous = os.environ.get("KUBECONFIG")
    try:
        cluster.start()
        cluster.apply_crds(crd_dir())
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig_path)
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        cluster.delete()


@pytest.fixture
async def api(control_plane: LocalControlPlane) -> kr8s.asyncio.Api:
    return await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig_path))


@pytest.fixture
async def namespace(api: kr8s.asyncio.Api) -> AsyncIterator[str]:
    """A fresh namespace per test. Without a controller-manager namespaces are never
    finalized, so it is left behind with the throwaway control plane; its
    CapacityRequests are deleted, as a later test's operator watches every namespace
    and would count them as its own demand."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await Namespace({"metadata": {"name": name}}, api=api).create()
    yield name
    async for request in api.async_get("capacityrequests", namespace=name):
        with contextlib.suppress(kr8s.NotFoundError):
            await request.delete()


@pytest.fixture(scope="session")
def crds_path() -> Path:
    return crd_dir()


@pytest.fixture(scope="session")
def controller_manager(control_plane: LocalControlPlane) -> LocalControlPlane:
    """kube-controller-manager on the session's control plane: GC, PDB status and more."""
    control_plane.start_controller_manager()
    return control_plane
