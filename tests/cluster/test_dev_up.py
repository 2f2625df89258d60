"""`bigfleet dev up` as a newcomer runs it: everything starts, kubectl sees BigFleet's
objects with the printed exports, and SIGTERM stops it all with 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import bigfleet, stop
from tests.support.waiting import until


def test_dev_env_puts_the_built_tools_on_path() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bigfleet.cli", "dev", "env"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.fullmatch(r"export PATH=(\S+):\$PATH\n", out)
    assert match is not None, out
    assert (Path(match.group(1)) / "kubectl").exists() and (Path(match.group(1)) / "helm").exists()


async def test_dev_up_serves_kubectl_and_stops_cleanly(tmp_path: Path) -> None:
    out_path, work = tmp_path / "out", tmp_path / "dev"
    args = ["dev", "up", "--work-dir", str(work), "--cycle-interval", "0.5"]
    with bigfleet(args, out_path) as process:
        await until(lambda: "Ctrl-C stops everything" in out_path.read_text(), "up", 180)
        exports = re.search(r"export KUBECONFIG=(\S+) PATH=(\S+):\$PATH", out_path.read_text())
        assert exports is not None, out_path.read_text()
        env = {**os.environ, "KUBECONFIG": exports.group(1)}
        kubectl = str(Path(exports.group(2)) / "kubectl")

        def shards() -> bool:
            listed = subprocess.run(
                [kubectl, "get", "shards", "-o", "name"], env=env, capture_output=True, text=True
            )
            return listed.stdout.strip() == "shard.bigfleet.lucy.sh/shard-0"

        await until(shards, "the shard's Shard resource", 60)
        code = stop(process, bound_s=120)
    text = out_path.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    assert (work / "shard.log").exists()  # a folder given is kept, with the logs
