"""A real three-member etcd cluster on loopback, from the control plane's etcd binary."""

from __future__ import annotations

import contextlib
import functools
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bigfleet.controlplane import find_binaries
from bigfleet.controlplane.process import ManagedProcess, free_port, http_ok


@dataclass
class EtcdCluster:
    work_dir: Path
    size: int = 3
    # etcd's default is 1000 ms; its shortest lease is 1.5x this, so a shorter
    # election timeout is what allows a leader lease under 2 s.
    election_timeout_ms: int | None = None
    members: list[ManagedProcess] = field(default_factory=list)
    client_ports: list[int] = field(default_factory=list)

    peer_ports: list[int] = field(default_factory=list)

    def allocate(self) -> str:
        """Choose the ports now (start uses them), so others can be told the endpoints
        before etcd runs; returns them as HOST:PORT,..."""
        if not self.client_ports:
            self.peer_ports = [free_port() for _ in range(self.size)]
            self.client_ports = [free_port() for _ in range(self.size)]
        return ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def start(self) -> None:
        etcd = find_binaries() / "etcd"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.allocate()
        peers = self.peer_ports
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        for i in range(self.size):
            member = ManagedProcess(
                f"etcd-m{i}",
                [
                    str(etcd),
                    f"--name=m{i}",
                    f"--data-dir={self.work_dir / f'm{i}'}",
                    f"--listen-client-urls=http://127.0.0.1:{self.client_ports[i]}",
                    f"--advertise-client-urls=http://127.0.0.1:{self.client_ports[i]}",
                    f"--listen-peer-urls=http://127.0.0.1:{peers[i]}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peers[i]}",
                    f"--initial-cluster={initial}",
                    "--initial-cluster-state=new",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                    *self._timing(),
                ],
                self.work_dir / f"m{i}.log",
            )
            member.start()
            self.members.append(member)
        for member, port in zip(self.members, self.client_ports, strict=True):
            member.wait_ready(functools.partial(http_ok, f"http://127.0.0.1:{port}/health"), 60)

    def _timing(self) -> list[str]:
        if self.election_timeout_ms is None:
            return []
        heartbeat = max(10, self.election_timeout_ms // 10)
        return [
            f"--election-timeout={self.election_timeout_ms}",
            f"--heartbeat-interval={heartbeat}",
        ]

    def raft_leader(self) -> int | None:
        """Index of the member that leads etcd's own Raft group, from its metrics."""
        for index, port in enumerate(self.client_ports):
            if not self.members[index].running:
                continue
            url = f"http://127.0.0.1:{port}/metrics"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if b"\netcd_server_is_leader 1" in r.read():
                    return index
        return None

    def kill(self, index: int) -> None:
        self.members[index].kill()

    def stop(self) -> None:
        for member in self.members:
            member.stop()
