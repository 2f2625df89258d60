"""Certificates for tests: `bigfleet certs init` into a folder, and the files of one identity."""

from __future__ import annotations

from pathlib import Path

from bigfleet.cli import main
from bigfleet.tls import TLSFiles


def issue(root: Path, *args: str) -> Path:
    """A fresh CA and a certificate per identity under `root` (args as for `certs init`)."""
    main.main(["certs", "init", str(root), *args], standalone_mode=False)
    return root


def files(root: Path, who: str) -> TLSFiles:
    """The files of identity folder `who` ("admin", "shard/s0", "cluster/a", ...)."""
    return TLSFiles(root / who / "tls.crt", root / who / "tls.key", root / who / "ca.crt")


def flags(root: Path, who: str) -> list[str]:
    """--tls-cert/--tls-key/--tls-ca for identity folder `who`."""
    f = files(root, who)
    return ["--tls-cert", str(f.cert), "--tls-key", str(f.key), "--tls-ca", str(f.ca)]
