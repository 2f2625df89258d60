"""`bigfleet dev`: a whole BigFleet on this machine, no Docker, for trying and developing.

`dev up` starts a real local control plane (etcd, kube-apiserver, controller-manager,
kube-scheduler, kwok) with the CRDs, then the coordinator (embedded store), a shard
that publishes its Shard resource there, the fake provider joining nodes, the operator
and the pod controller, each its own process; prints how to reach it; and stops all of
it on Ctrl-C or SIGTERM. `dev env` prints the exports that put the built kubectl and
helm on PATH.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from bigfleet.cli.allinone import DEMO_POOLS
from bigfleet.cli.running import until_signalled
from bigfleet.controlplane import BinariesMissing, find_binaries
from bigfleet.controlplane.chain import Chain
from bigfleet.controlplane.process import ProcessFailed
from bigfleet.k8snames import dns1123_subdomain_error

LOOK = "kubectl get upcomingnodes,capacityrequests,shards,availablecapacities"


def _binaries() -> Path:
    try:
        return find_binaries()
    except BinariesMissing as err:
        raise click.ClickException(str(err)) from None


def _cluster_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = dns1123_subdomain_error(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.group("dev")
def dev() -> None:
    """A local BigFleet without Docker: control plane, every component, kubectl."""


@dev.command("up")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the control plane, logs and state live; kept after stop. "
    "[default: a new temporary folder, removed on a clean stop]",
)
@click.option(
    "--cluster",
    default="dev",
    show_default=True,
    callback=_cluster_name,
    help="The managed cluster's id (a DNS-1123 subdomain).",
)
@click.option(
    "--cycle-interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between the shard's decision cycles.",
)
def up(work_dir: Path | None, cluster: str, cycle_interval: float) -> None:
    """Start everything, print how to reach it, and run until Ctrl-C.

    The fleet is the fake provider's demo fleet (8 GPU and 8 small machines, all
    Idle); a Pod that does not fit any Node gets a CapacityRequest, a machine
    boots into a Node and the Pod is bound. Logs of each process are in the
    work folder.
    """
    bin_dir = _binaries()
    folder = work_dir or Path(tempfile.mkdtemp(prefix="bigfleet-dev-"))
    kubeconfig = folder / f"control-plane-{cluster}" / "admin.kubeconfig"
    chain = Chain(
        folder,
        {"pools": list(DEMO_POOLS)},
        clusters=(cluster,),
        # The shard publishes its Shard resource on the same API server, so
        # `kubectl get shards` shows it.
        shard_args=("--kubeconfig", str(kubeconfig), "--cycle-interval", str(cycle_interval)),
        rollup_interval_s=2.0,
        coordinator=True,
    )
    click.echo(f"starting the control plane and BigFleet in {folder} ...", err=True)
    try:
        chain.start()
    except (ProcessFailed, subprocess.CalledProcessError) as err:
        # The folder stays, even a temporary one: its logs say why.
        raise click.ClickException(
            f"a part did not start: {err}\nlogs of every part are in {folder}"
        ) from None

    path = shlex.quote(str(bin_dir))
    click.echo(
        f"BigFleet is up (cluster {cluster}, logs in {folder}).\n\n"
        f"  export KUBECONFIG={shlex.quote(str(kubeconfig))} PATH={path}:$PATH\n"
        f"  {LOOK}\n"
        f"  bigfleet ctl --coordinator {chain.coordinator_address} list-shards\n"
        f"  bigfleet explain cluster {cluster} --shard {chain.shard_address}\n\n"
        "Ctrl-C stops everything."
    )

    async def wait(stop: asyncio.Event) -> None:
        await stop.wait()

    try:
        until_signalled(wait)
    finally:
        click.echo("stopping ...", err=True)
        chain.stop()
        if work_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


@dev.command("env")
def env() -> None:
    """Shell exports that put the built kubectl, helm and friends on PATH.

    Use it as `eval "$(bigfleet dev env)"`.
    """
    click.echo(f"export PATH={shlex.quote(str(_binaries()))}:$PATH")
