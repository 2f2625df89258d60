"""Subcommands that a later issue builds: listed in --help, refusing to run."""

from __future__ import annotations

import sys

import click


def planned(name: str, summary: str, issue: int) -> click.Command:
    """A command that names the issue building it and exits 2 whatever it is given."""

    @click.command(
        name,
        help=f"[not built yet: issue #{issue}] {summary}.",
        short_help=f"[not built yet] {summary}",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def command() -> None:
        click.echo(f"bigfleet {name}: not built yet; issue #{issue} builds it.", err=True)
        sys.exit(2)

    return command
