"""`bigfleet pod-controller`: CapacityRequests for unschedulable Pods."""

from __future__ import annotations

from pathlib import Path

import click

from bigfleet.cli import options
from bigfleet.cli.running import until_signalled
from bigfleet.leader import LeaderElection, LeadershipLost


@click.command("pod-controller")
@options.cluster_kubeconfig
@click.option(
    "--mode",
    type=click.Choice(["unschedulable-only", "per-pod"]),
    default="unschedulable-only",
    show_default=True,
    help="unschedulable-only: a CR the first time a pod cannot be scheduled; "
    "per-pod: one CR per running pod (exact demand, more objects).",
)
@click.option(
    "--priority-class-defaults",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML: PriorityClass name -> {interruptionPenalty, reclamationPenalty} "
    "(mount a ConfigMap here); used when a pod has no penalty annotations.",
)
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="Pods reconciled at once; more than the API client keeps connections for "
    "makes every extra request pay a TLS handshake.",
)
@options.metrics_port(8080)
@options.leader_election("bigfleet-pod-controller")
@options.shutdown_timeout
def pod_controller(
    kubeconfig: Path | None,
    mode: str,
    priority_class_defaults: Path | None,
    concurrency: int,
    metrics_port: int,
    leader_election: LeaderElection | None,
    shutdown_timeout: float,
) -> None:
    """Create a CapacityRequest, owned by the pod, for each Pod that cannot be scheduled."""
    from bigfleet.operators.podcontroller import app

    settings = app.PodControllerSettings(
        kubeconfig=kubeconfig,
        mode=mode,  # type: ignore[arg-type]
        defaults=app.load_defaults(priority_class_defaults),
        concurrency=concurrency,
        metrics_addr=options.metrics_address("", metrics_port),
        leader_election=leader_election,
    )

    try:
        until_signalled(lambda stop: app.run(settings, stop), shutdown_timeout)
    except LeadershipLost as err:  # a standby may lead now: end, to come back as one
        raise click.ClickException(str(err)) from None
