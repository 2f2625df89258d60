"""An operator started before its API server waits, says why in one line, and still stops
cleanly on SIGTERM: no traceback, no exit."""

from __future__ import annotations

from pathlib import Path

from bigfleet.controlplane.process import free_port
from tests.support.processes import bigfleet, stop
from tests.support.waiting import until

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: down
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: someone
  user: {{token: not-a-real-token}}
contexts:
- name: down
  context: {{cluster: down, user: someone}}
current-context: down
"""


async def test_an_operator_waits_for_an_api_server_that_is_not_up(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(port=free_port()))
    log_path = tmp_path / "log"
    args = ["operator", "--cluster-id", "early", "--shard", f"127.0.0.1:{free_port()}",
            "--kubeconfig", str(kubeconfig), "--metrics-port", "0"]  # fmt: skip
    with bigfleet(args, log_path) as process:
        said = "operator waits for Kubernetes: the Kubernetes API server is not reachable"
        await until(lambda: said in log_path.read_text(), "the waiting line", 60)
        assert process.poll() is None  # still waiting, not exited
        code = stop(process)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    assert text.count(said) == 1  # said once, not once a try
