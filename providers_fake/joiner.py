"""Booting fake machines into real clusters: the join a kubelet would do, from the blob.

With `--join-nodes`, a machine that reaches Configured "boots": the fake
reads the join blob the operator rendered (a cloud-config whose
`write_files` holds a bootstrap kubeconfig: API server URL, CA, bootstrap
token; `kubelet_node_labels` optional), and does what a kubelet's TLS
bootstrap does: with the bootstrap token it asks for a client certificate
(a CertificateSigningRequest for `system:node:<machine id>`, approved and
signed by the cluster's controller-manager), then, as that node, registers
its Node with the machine's labels and allocatable and kwok's annotation
(kwok then keeps it Ready and runs its pods). When the machine leaves
Configured and Draining it is wiped: the fake forgets its node credentials
(a node may not delete its own Node; the operator deletes the Node of a
machine that drained back to Idle).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tenacity
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bigfleet.providers_fake.fleet import FakeFleet
from bigfleet.wire import provider_pb2 as pb

log = logging.getLogger(__name__)
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
_BOUND = (pb.MACHINE_STATE_CONFIGURED, pb.MACHINE_STATE_DRAINING)


def _worth_retrying(err: BaseException) -> bool:
    if isinstance(err, httpx.HTTPStatusError):
        return err.response.status_code in (401, 403, 429) or err.response.status_code >= 500
    return isinstance(err, httpx.TransportError)


class BadBlob(ValueError):
    """The blob carries no usable bootstrap kubeconfig."""


@dataclass(frozen=True)
class JoinConfig:
    server: str
    ca_pem: bytes
    token: str
    labels: dict[str, str]


def read_blob(blob: bytes) -> JoinConfig:
    """The bootstrap kubeconfig and node labels inside a cloud-config join blob."""
    try:
        document = yaml.safe_load(blob) or {}
        contents = [yaml.safe_load(f["content"]) for f in document.get("write_files") or []]
        kubeconfig = next(c for c in contents if isinstance(c, dict) and "clusters" in c)
        cluster = kubeconfig["clusters"][0]["cluster"]
        user = kubeconfig["users"][0]["user"]
        labels = dict(
            pair.split("=", 1)
            for pair in str(document.get("kubelet_node_labels") or "").split(",")
            if "=" in pair
        )
        return JoinConfig(
            server=cluster["server"],
            ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
            token=user["token"],
            labels=labels,
        )
    except (yaml.YAMLError, StopIteration, KeyError, IndexError, TypeError, ValueError) as err:
        raise BadBlob(f"no bootstrap kubeconfig in the join blob: {err!r}") from err


def _node_labels(machine: pb.Machine, extra: dict[str, str]) -> dict[str, str]:
    labels = {
        **dict(machine.labels),
        **extra,
        "kubernetes.io/hostname": machine.id,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    if machine.instance_type:
        labels["node.kubernetes.io/instance-type"] = machine.instance_type
    if machine.zone:
        labels["topology.kubernetes.io/zone"] = machine.zone
    return labels


@dataclass
class JoinedNode:
    server: str
    ca_pem: bytes
    cert_file: Path
    key_file: Path


class NodeJoiner:
    def __init__(
        self,
        fleet: FakeFleet,
        work_dir: Path | None = None,
        every_s: float = 0.2,
        concurrency: int = 16,
        csr_timeout_s: float = 60.0,
    ) -> None:
        self.fleet = fleet
        self._owns_work_dir = work_dir is None  # a folder it made is its own to remove
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="bigfleet-fake-nodes-"))
        self.every_s = every_s
        self.csr_timeout_s = csr_timeout_s
        self.joined: dict[str, JoinedNode] = {}
        self.failed: dict[str, str] = {}  # machine id -> why its join failed (not retried)
        self._joining: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self) -> None:
        while True:
            self.reconcile_once()
            await asyncio.sleep(self.every_s)

    async def close(self) -> None:
        """Stop joining and remove the nodes' key and certificate files (the folder too,
        when the joiner made it): a stopped fake leaves no private keys behind."""
        for task in self._joining.values():
            task.cancel()
        await asyncio.gather(*self._joining.values(), return_exceptions=True)
        self._joining.clear()
        for node in self.joined.values():
            node.cert_file.unlink(missing_ok=True)
            node.key_file.unlink(missing_ok=True)
        self.joined.clear()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def reconcile_once(self) -> None:
        machines = {m.id: m for m in self.fleet.list().machines}
        for machine_id, machine in machines.items():
            configured = machine.state == pb.MACHINE_STATE_CONFIGURED
            if (
                configured
                and machine_id not in self.joined
                and machine_id not in self._joining
                and machine_id not in self.failed
            ):
                blob = self.fleet.bootstrap_blob(machine_id)
                self._joining[machine_id] = asyncio.create_task(self._join(machine, blob))
        for machine_id in list(self.joined):
            if self._unbound(machines.get(machine_id)):
                node = self.joined.pop(machine_id)
                node.cert_file.unlink(missing_ok=True)
                node.key_file.unlink(missing_ok=True)
        for machine_id in list(self.failed):  # a reset machine may join again next time
            if self._unbound(machines.get(machine_id)):
                del self.failed[machine_id]

    @staticmethod
    def _unbound(machine: pb.Machine | None) -> bool:
        return machine is None or machine.state not in _BOUND

    async def _join(self, machine: pb.Machine, blob: bytes) -> None:
        # A kubelet keeps trying: a token is refused (401) until the API server's token
        # cache has seen its Secret, and an API server may be briefly away.
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_worth_retrying),
            wait=tenacity.wait_exponential(multiplier=0.2, max=2),
            stop=tenacity.stop_after_delay(self.csr_timeout_s),
            reraise=True,
        )
        try:
            async with self._slots:
                self.joined[machine.id] = await retrying(self.join, machine, blob)
            log.info("node joined", extra={"machine_id": machine.id})
        except (BadBlob, httpx.HTTPError, TimeoutError, KeyError) as err:
            self.failed[machine.id] = str(err)
            log.warning("node join failed", extra={"machine_id": machine.id, "error": str(err)})
        finally:
            self._joining.pop(machine.id, None)

    async def join(self, machine: pb.Machine, blob: bytes) -> JoinedNode:
        """TLS-bootstrap a client certificate with the blob's token, then register the Node."""
        config = read_blob(blob)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{machine.id}"),
            ]
        )
        csr = (
            x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        )
        verify = ssl.create_default_context(cadata=config.ca_pem.decode())
        bearer = {"Authorization": f"Bearer {config.token}"}
        async with httpx.AsyncClient(base_url=config.server, verify=verify, headers=bearer) as c:
            created = await c.post(
                CSR_PATH,
                json={
                    "apiVersion": "certificates.k8s.io/v1",
                    "kind": "CertificateSigningRequest",
                    "metadata": {"generateName": f"node-csr-{machine.id}-"},
                    "spec": {
                        "request": base64.b64encode(
                            csr.public_bytes(serialization.Encoding.PEM)
                        ).decode(),
                        "signerName": KUBELET_SIGNER,
                        "usages": ["digital signature", "client auth"],
                    },
                },
            )
            created.raise_for_status()
            name = created.json()["metadata"]["name"]
            certificate = await self._issued(c, name)
        node = JoinedNode(
            config.server,
            config.ca_pem,
            self._write(f"{machine.id}.crt", certificate),
            self._write(
                f"{machine.id}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
        )
        async with self._as_node(node) as c:
            registered = await c.post("/api/v1/nodes", json=self._node(machine, config.labels))
            if registered.status_code != 409:  # a restart of the fake may find it registered
                registered.raise_for_status()
        return node

    async def _issued(self, client: httpx.AsyncClient, name: str) -> bytes:
        deadline = time.monotonic() + self.csr_timeout_s
        while time.monotonic() < deadline:
            found = await client.get(f"{CSR_PATH}/{name}")
            found.raise_for_status()
            issued = (found.json().get("status") or {}).get("certificate")
            if issued:
                return base64.b64decode(issued)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"certificate request {name} was not approved and signed in time")

    def _node(self, machine: pb.Machine, labels: dict[str, str]) -> dict[str, Any]:
        capacity = {**dict(machine.resources.resources), "pods": "110"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": machine.id,
                "labels": _node_labels(machine, labels),
                "annotations": {KWOK_ANNOTATION: "fake"},
            },
            "spec": {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }

    def _as_node(self, node: JoinedNode) -> httpx.AsyncClient:
        context = ssl.create_default_context(cadata=node.ca_pem.decode())
        context.load_cert_chain(str(node.cert_file), str(node.key_file))
        return httpx.AsyncClient(base_url=node.server, verify=context)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.work_dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path
