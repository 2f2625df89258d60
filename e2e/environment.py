"""What the kind tier needs from the machine it runs on, and why it skips without it.

The check runs once, at import, and costs one `docker info` call. It never
raises: a missing prerequisite becomes the skip reason pytest prints.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

# Command-line tools the tier drives besides Docker itself.
TOOLS = ("kind", "helm", "kubectl")
DOCKER_INFO_TIMEOUT_S = 30


@functools.cache
def missing_prerequisite() -> str | None:
    """Why the kind tier cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "the kind tier needs Docker: no `docker` command on PATH"
    try:
        info = subprocess.run(
            ["docker", "info"],
            capture_output=True,
            text=True,
            timeout=DOCKER_INFO_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"the kind tier needs a running Docker engine: `docker info` failed ({err})"
    if info.returncode != 0:
        first = next((ln for ln in info.stderr.splitlines() if ln.strip()), "no output")
        return f"the kind tier needs a running Docker engine: `docker info` failed ({first})"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"the kind tier needs `{tool}` on PATH"
    return None
