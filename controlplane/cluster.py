"""LocalControlPlane: etcd and kube-apiserver on free loopback ports, with a kubeconfig.

Same surface as a kind cluster in the e2e tier (`kubeconfig_path`, `kubectl()`,
`delete()`), so tests do not care which one they got.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from bigfleet.controlplane.binaries import find_binaries
from bigfleet.controlplane.pki import Pki, make_pki
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok, wait_until
from bigfleet.crd.manifests import load_crds

_ETCD_READY_S = 30.0
# Two cores and a cold page cache: kube-apiserver needs a while for its post-start hooks.
_APISERVER_READY_S = 90.0


KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class KubectlFailed(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


class LocalControlPlane:
    def __init__(self, work_dir: Path, bin_dir: Path | None = None) -> None:
        self.bin_dir = find_binaries(bin_dir)
        self.work_dir = work_dir
        self.kubeconfig_path = work_dir / "admin.kubeconfig"
        self.etcd_url = ""
        self.apiserver_url = ""
        self._pki: Pki | None = None
        self._processes: list[ManagedProcess] = []

    @property
    def pki(self) -> Pki:
        if self._pki is None:
            raise RuntimeError("control plane not started")
        return self._pki

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._pki = make_pki(self.work_dir / "pki")
        try:
            self._start_etcd()
            self._start_apiserver()
        except BaseException:
            self.delete()
            raise
        self._write_kubeconfig()

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        etcd = ManagedProcess(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                # Test data is thrown away at the end; fsync only slows the suite.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.work_dir / "etcd.log",
        )
        self._launch(etcd, lambda: http_ok(f"{self.etcd_url}/health"), _ETCD_READY_S)

    def _start_apiserver(self) -> None:
        port = free_port()
        self.apiserver_url = f"https://127.0.0.1:{port}"
        pki = self.pki
        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                # A loopback advertise address cannot be written into the
                # `kubernetes` Endpoints, so do not try.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.work_dir / 'apiserver'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-account-key-file={pki.service_account_pub}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # Node: a joined node (system:node:<name>) may write its own Node.
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # No controller-manager creates `default` ServiceAccounts here.
                "--disable-admission-plugins=ServiceAccount",
                "--enable-bootstrap-token-auth=true",
            ],
            self.work_dir / "kube-apiserver.log",
        )
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._launch(
            apiserver,
            lambda: http_ok(f"{self.apiserver_url}/readyz", context),
            _APISERVER_READY_S,
        )

    def _launch(self, process: ManagedProcess, probe: Callable[[], bool], timeout_s: float) -> None:
        self._processes.append(process)
        process.start()
        process.wait_ready(probe, timeout_s)

    def _launch_self_signed(self, process: ManagedProcess, port: int) -> None:
        """Launch a component whose /healthz is served with a self-signed certificate."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self._launch(
            process,
            lambda: http_ok(f"https://127.0.0.1:{port}/healthz", context),
            _APISERVER_READY_S,
        )

    def start_controller_manager(self) -> None:
        """kube-controller-manager: garbage collection, PDB status, namespace cleanup."""
        port = free_port()
        pki = self.pki
        manager = ManagedProcess(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--controllers=*,bootstrapsigner,tokencleaner",
                # The defaults (20 QPS) make a burst of node joins wait on CSR approval.
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                # Signs the kubelet client certificates that joining nodes ask for.
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
            ],
            self.work_dir / "kube-controller-manager.log",
        )
        self._launch_self_signed(manager, port)

    def start_scheduler(self) -> None:
        """kube-scheduler: binds pods to nodes."""
        port = free_port()
        scheduler = ManagedProcess(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                # The defaults (50 QPS) cap binding at 50 pods a second; large clusters raise them.
                "--kube-api-qps=300",
                "--kube-api-burst=600",
            ],
            self.work_dir / "kube-scheduler.log",
        )
        self._launch_self_signed(scheduler, port)

    def start_kwok(self) -> None:
        """kwok, the fake kubelet: keeps Nodes annotated `kwok.x-k8s.io/node: fake` Ready
        and runs the pods bound to them."""
        port = free_port()
        kwok = ManagedProcess(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{port}",
            ],
            self.work_dir / "kwok.log",
        )
        self._launch(kwok, lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), _ETCD_READY_S)

    def _write_kubeconfig(self) -> None:
        pki = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "bigfleet-local",
                    "cluster": {
                        "server": self.apiserver_url,
                        "certificate-authority": str(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "bigfleet-admin",
                    "user": {
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "bigfleet-local",
                    "context": {"cluster": "bigfleet-local", "user": "bigfleet-admin"},
                }
            ],
            "current-context": "bigfleet-local",
        }
        self.kubeconfig_path.write_text(yaml.safe_dump(config))
        self.kubeconfig_path.chmod(0o600)

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this control plane; with `check`, fail on its stderr."""
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig_path}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            raise KubectlFailed(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def apply_crds(self, crd_dir: Path) -> None:
        """Apply every CRD in `crd_dir` and wait until the API server serves them."""
        self.kubectl("apply", "--server-side", "-f", str(crd_dir))
        crds = load_crds(crd_dir).values()
        names = [f"crd/{crd['metadata']['name']}" for crd in crds]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
        # Established can precede the storage being ready ("storage is (re)initializing").
        for crd in crds:
            self._wait_served(crd["metadata"]["name"])

    def _wait_served(self, resource: str) -> None:
        def listable() -> bool:
            return self.kubectl("get", resource, "-A", check=False).returncode == 0

        wait_until(listable, _APISERVER_READY_S, f"{resource} being served")

    def delete(self) -> None:
        """Stop every process, newest first."""
        while self._processes:
            self._processes.pop().stop()
