"""Options several commands share, declared once so their flags and help agree."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from bigfleet.cli.running import SHUTDOWN_TIMEOUT_S
from bigfleet.k8snames import dns1123_subdomain_error

F = TypeVar("F", bound=Callable[..., Any])

json_output = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the figures here as JSON.",
)


class SeedType(click.ParamType[int]):
    """An integer seed written in decimal, or in hex with 0x (0xCAFEBABE) as the specs do."""

    name = "SEED"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            seed = int(str(value).replace("_", ""), 0)
        except ValueError:
            self.fail(f"{value!r} is not a seed (write 7, or hex as 0xCAFEBABE)", param, ctx)
        if seed < 0:
            self.fail(f"{value!r}: a seed is not negative", param, ctx)
        return seed


SEED = SeedType()


def write_json(path: Path | None, figures: dict[str, object]) -> None:
    """Write a benchmark's figures where --json points; nothing without it."""
    if path:
        path.write_text(json.dumps(figures, indent=2) + "\n")


def metrics_port(default: int, serves: str = "/metrics") -> Callable[[F], F]:
    return click.option(
        "--metrics-port",
        default=default,
        show_default=True,
        type=click.IntRange(0, 65535),
        help=f"Port for {serves}; 0 disables the listener.",
    )


def _plot_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Refuse a chart file of an unknown kind, or any chart without matplotlib, before the
    run starts rather than after it."""
    from bigfleet import plot

    if value is None:
        return None
    try:
        plot.check_path(value)
        plot.require()
    except (ValueError, plot.PlotUnavailable) as err:
        raise click.BadParameter(str(err), ctx, param) from err
    return value


def plot_output(what: str) -> Callable[[F], F]:
    """--plot FILE, handed to the command as `plot_path: Path | None`: a chart of `what`,
    PNG or SVG by the suffix (needs the `plot` extra)."""
    return click.option(
        "--plot",
        "plot_path",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_plot_path,
        metavar="FILE.png|FILE.svg",
        help=f"Draw {what} here, PNG or SVG by the suffix (needs bigfleet[plot]).",
    )


def metrics_address(host: str, port: int) -> str:
    """The metrics listener address for a port flag: "0" (disabled) when the port is 0."""
    return f"{host or '0.0.0.0'}:{port}" if port else "0"


# Every long-running command: how long a stop may take before what is left is cancelled.
shutdown_timeout = click.option(
    "--shutdown-timeout",
    default=SHUTDOWN_TIMEOUT_S,
    show_default=True,
    type=click.FloatRange(min=0.5),
    metavar="SECONDS",
    help="After SIGTERM or SIGINT, how long to wind down (close streams, finish calls) "
    "before cancelling what is left; keep it below the pod's terminationGracePeriodSeconds.",
)


# The managed cluster's API server, for the processes that run in one.
cluster_kubeconfig = click.option(
    "--kubeconfig",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Credentials for this cluster's API server. Without it, kubectl's order: "
    "$KUBECONFIG (several files allowed), ~/.kube/config, then the pod's service account.",
)


# For the processes whose Kubernetes side is optional (shard, coordinator).
in_cluster = click.option(
    "--in-cluster",
    is_flag=True,
    default=False,
    help="As --kubeconfig, finding the API server as kubectl does: $KUBECONFIG, "
    "~/.kube/config, then the pod's service account (its token re-read on a 401).",
)


def tls(f: F) -> F:
    """--tls-cert/--tls-key/--tls-ca, handed to the command as one `tls: TLSFiles | None`.

    All three: mutual TLS; none: plaintext; some: a usage error naming the missing flags.
    """
    from bigfleet.tls import TLSFiles

    @functools.wraps(f)
    def command(
        *args: Any, tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, **kw: Any
    ) -> Any:
        try:
            files = TLSFiles.from_flags(tls_cert, tls_key, tls_ca)
        except ValueError as err:
            raise click.UsageError(str(err)) from err
        return f(*args, tls=files, **kw)

    readable = click.Path(exists=True, dir_okay=False, path_type=Path)
    for flag, env, what in reversed(
        (
            ("--tls-cert", "BIGFLEET_TLS_CERT", "This process's certificate (PEM)"),
            ("--tls-key", "BIGFLEET_TLS_KEY", "Its private key (PEM)"),
            ("--tls-ca", "BIGFLEET_TLS_CA", "CA bundle that signs every peer (PEM)"),
        )
    ):
        command = click.option(
            flag,
            envvar=env,
            type=readable,
            default=None,
            help=f"{what}. All three TLS flags: mutual TLS; none: plaintext.",
        )(command)
    return cast(F, command)


def leader_election(default_id: str) -> Callable[[F], F]:
    """--leader-elect and its Lease, handed to the command as
    `leader_election: LeaderElection | None` (None without --leader-elect). `default_id`
    may name `{cluster_id}`, filled from the command's --cluster-id."""
    from bigfleet import leader

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(
            *args: Any,
            leader_elect: bool,
            leader_election_namespace: str | None,
            leader_election_id: str | None,
            **kw: Any,
        ) -> Any:
            election = None
            if leader_elect:
                name = leader_election_id or default_id.format(**kw)
                problem = dns1123_subdomain_error(name)
                if problem is not None:
                    raise click.BadParameter(problem, param_hint="--leader-election-id")
                election = leader.LeaderElection(
                    namespace=leader_election_namespace or leader.default_namespace(),
                    name=name,
                    identity=leader.default_identity(),
                )
            return f(*args, leader_election=election, **kw)

        command = click.option(
            "--leader-election-id",
            default=None,
            help=f"The Lease the replicas share. [default: {default_id}]",
        )(command)
        command = click.option(
            "--leader-election-namespace",
            default=None,
            help="Where that Lease lives. [default: $POD_NAMESPACE, else the service "
            "account's namespace, else default]",
        )(command)
        command = click.option(
            "--leader-elect",
            is_flag=True,
            default=False,
            help="Work only while holding a coordination.k8s.io Lease, so several replicas "
            "can run with one working and the others standing by.",
        )(command)
        return cast(F, command)

    return decorate
