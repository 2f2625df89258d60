"""In-cluster login as a pod does it: the projected token file, its CA and namespace at
the fixed service-account path, and the token file rewritten while the process runs.

The process runs in its own user and mount namespaces, so the files appear at
/var/run/secrets/kubernetes.io/serviceaccount without touching the machine's. The
first token is bound to a Secret: deleting that Secret revokes it, as an expired
projected token would be, so the process keeps working only if it reads the file anew.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Pod

from bigfleet.controlplane import LocalControlPlane
from bigfleet.controlplane.process import free_port, http_ok
from bigfleet.crd import CapacityRequest
from tests.support.processes import stop
from tests.support.waiting import until

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Inside the namespaces: an empty /run of our own, the service-account folder bound on it.
IN_NAMESPACES = (
    'mount -t tmpfs bigfleet-run /run && mkdir -p "$MOUNT" && '
    'mount --bind "$SA_DIR" "$MOUNT" && exec "$@"'
)


def _namespaces_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs probe /run"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespaces_available(), reason="needs unprivileged user and mount namespaces"
)


def _token(control_plane: LocalControlPlane, namespace: str, account: str, secret: str) -> str:
    """A TokenRequest bound to `secret`: valid until that Secret is deleted."""
    control_plane.kubectl("create", "secret", "generic", secret, "-n", namespace)
    issued = control_plane.kubectl(
        "create", "token", account, "-n", namespace,
        "--bound-object-kind", "Secret", "--bound-object-name", secret,
    )  # fmt: skip
    return str(issued.stdout).strip()


def _unschedulable(pod: Pod) -> dict[str, object]:
    return {
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": f"{pod.name}: no node fits"}
        ]
    }  # fmt: skip


async def test_the_pod_controller_logs_in_as_its_service_account_and_rereads_a_rotated_token(
    control_plane: LocalControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path
) -> None:
    account = "bigfleet-pod-controller"
    control_plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    # The chart's RBAC is tested elsewhere; here only the login matters.
    binding = f"{namespace}-login"
    control_plane.kubectl(
        "create", "clusterrolebinding", binding, "--clusterrole", "cluster-admin",
        "--serviceaccount", f"{namespace}:{account}",
    )  # fmt: skip
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(_token(control_plane, namespace, account, "first-token"))
    (sa_dir / "ca.crt").write_text(control_plane.pki.ca_cert.read_text())
    (sa_dir / "namespace").write_text(namespace)

    url = urlparse(control_plane.apiserver_url)
    home = tmp_path / "home"  # no ~/.kube/config, and no $KUBECONFIG: only the account
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env |= {"HOME": str(home), "SA_DIR": str(sa_dir), "MOUNT": MOUNT,
            "KUBERNETES_SERVICE_HOST": str(url.hostname),
            "KUBERNETES_SERVICE_PORT": str(url.port)}  # fmt: skip
    metrics = free_port()
    command = [
        "unshare", "-rm", "sh", "-c", IN_NAMESPACES, "sh",
        sys.executable, "-m", "bigfleet.cli", "pod-controller",
        "--metrics-port", str(metrics), "--leader-elect",
    ]  # fmt: skip

    async def requested(pod: Pod) -> bool:
        found = [cr async for cr in api.async_get(CapacityRequest, namespace=namespace)]
        owners = [o["name"] for cr in found for o in cr.raw["metadata"].get("ownerReferences", [])]
        return pod.name in owners

    async def unschedulable_pod(name: str) -> Pod:
        pod = Pod(
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": name, "namespace": namespace},
             "spec": {"containers": [{"name": "c", "image": "busybox",
                                      "resources": {"requests": {"cpu": "1"}}}]}},
            api=api,
        )  # fmt: skip
        await pod.create()
        await pod.patch({"status": _unschedulable(pod)}, subresource="status")
        return pod

    log = tmp_path / "log"
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            await until(lambda: http_ok(f"http://127.0.0.1:{metrics}/metrics"), "serving")
            before = await unschedulable_pod("before-rotation")
            await until(lambda: requested(before), "a request made with the first token")
            # Its Lease sits in the account's namespace, read from the mounted file.
            holder = control_plane.kubectl(
                "get", "lease", "bigfleet-pod-controller", "-n", namespace, "-o", "json"
            )
            assert json.loads(holder.stdout)["spec"]["holderIdentity"]

            # The kubelet rewrites the file in place; the old token then stops working.
            (sa_dir / "token").write_text(_token(control_plane, namespace, account, "second"))
            control_plane.kubectl("delete", "secret", "first-token", "-n", namespace)
            # The API server trusts a token it has checked for 10 s more. Past that, Lease
            # renewals (every 2 s) answered 401 unless the file was read again, and a
            # leader that cannot renew for 10 s gives up and exits.
            await asyncio.sleep(12)
            assert process.poll() is None, log.read_text()[-3000:]
            after = await unschedulable_pod("after-rotation")
            await until(lambda: requested(after), "a request made with the rewritten token")
            assert stop(process) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        control_plane.kubectl("delete", "clusterrolebinding", binding, check=False)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
