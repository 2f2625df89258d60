"""etcd clients for the coordinator: plaintext, or TLS with a client certificate.

aetcd 1.0 dials plaintext only; `TLSClient` is an `aetcd.Client` whose channel is a
TLS one (the server verified against the CA bundle, this replica presenting its
certificate, as etcd's `--client-cert-auth` requires). The files are read when the
client connects: a rotated certificate is used from the coordinator's next connection
to etcd (after it lost its endpoint, or a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aetcd
import grpc
from aetcd import rpc, watcher

from bigfleet.tls import all_or_none


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """The CA bundle that signed etcd's server certificate, and this client's pair."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_flags(cls, ca: Path | None, cert: Path | None, key: Path | None) -> EtcdTLS | None:
        """All three: TLS to etcd; none: plaintext (None); some: ValueError naming the missing."""
        given = {"--etcd-cacert": ca, "--etcd-cert": cert, "--etcd-key": key}
        if not all_or_none(
            given, "TLS to etcd needs the CA bundle, a client certificate and its key"
        ):
            return None
        assert ca is not None and cert is not None and key is not None
        return cls(ca, cert, key)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


class TLSClient(aetcd.Client):  # type: ignore[misc]
    """An aetcd client over TLS; everything but the channel is aetcd's own."""

    def __init__(self, tls: EtcdTLS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls = tls

    async def connect(self) -> None:
        # aetcd's own connect, with a secure channel; no username/password (the
        # certificate is the credential).
        if self._connected.is_set():
            return
        target = f"{self._host}:{self._port}"
        try:
            credentials = self._tls.credentials()
        except OSError as err:
            raise aetcd.exceptions.ConnectionFailedError(f"etcd TLS files: {err}") from err
        self.channel = rpc.secure_channel(target, credentials, options=self._options.items())
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()


def client(host: str, port: int, tls: EtcdTLS | None, timeout: int = 5) -> aetcd.Client:
    """A (not yet connected) client of the etcd member at host:port."""
    if tls is None:
        return aetcd.Client(host=host, port=port, timeout=timeout)
    return TLSClient(tls, host=host, port=port, timeout=timeout)
