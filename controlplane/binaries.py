"""Where the control-plane binaries are cached, and the check that they are all there."""

from __future__ import annotations

import os
from pathlib import Path

# Keep equal to the default of scripts/build-control-plane.sh (a unit test checks it).
KUBE_VERSION = "1.34.4"
REQUIRED = ("etcd", "kube-apiserver", "kubectl")
BIN_DIR_ENV = "BIGFLEET_CONTROL_PLANE_BIN"


class BinariesMissing(RuntimeError):
    """The cache lacks a binary; scripts/build-control-plane.sh builds them."""


def default_bin_dir() -> Path:
    cache = os.environ.get("BIGFLEET_BIN_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "bigfleet"
        / "control-plane"
    )
    return Path(cache) / f"v{KUBE_VERSION}"


def find_binaries(bin_dir: Path | None = None) -> Path:
    """The directory with every required binary: argument, else environment, else cache."""
    env = os.environ.get(BIN_DIR_ENV)
    directory = bin_dir or (Path(env) if env else default_bin_dir())
    missing = [name for name in REQUIRED if not os.access(directory / name, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"{', '.join(missing)} not found in {directory}; "
            "run scripts/build-control-plane.sh (or set " + BIN_DIR_ENV + ")"
        )
    return directory
