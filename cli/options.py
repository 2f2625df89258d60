"""Options several commands share, declared once so their flags and help agree."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

json_output = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the figures here as JSON.",
)


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


def metrics_address(host: str, port: int) -> str:
    """The metrics listener address for a port flag: "0" (disabled) when the port is 0."""
    return f"{host or '0.0.0.0'}:{port}" if port else "0"


# The managed cluster's API server, for the processes that run in one.
cluster_kubeconfig = click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Credentials for this cluster's API server.",
)
