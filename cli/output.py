"""How commands print what they read: a table for people, JSON or YAML for scripts.

A listing is a sequence of records with snake_case keys: numbers stay numbers, an
unset time is null, text stays text. JSON and YAML print the records as they are; the
table shows the same records, one column per key, with `—` for an empty cell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "yaml")
EMPTY = "—"


def output_option(f: F) -> F:
    """`-o/--output table|json|yaml`, handed to the command as `output`."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="A table to read, or JSON or YAML with the same rows for scripts.",
    )(f)


def print_data(output: str, data: object, table: Callable[[], None]) -> None:
    """`data` as JSON or YAML, or for `table` the command's own table (`table()`)."""
    if output == "json":
        print_json(data)
    elif output == "yaml":
        import yaml

        # safe_dump quotes strings YAML would read back as something else (times, "yes").
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        table()


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_records(
    output: str, columns: Mapping[str, str], records: Sequence[Mapping[str, object]]
) -> None:
    """A listing: `columns` maps each table header to its record key, in table order."""

    def table() -> None:
        print_table(
            list(columns), [[_cell(record[key]) for key in columns.values()] for record in records]
        )

    print_data(output, list(records), table)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], show_header: bool = True
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, header_style="bold", show_header=show_header)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    # Piped, rich would wrap at 80 columns; a script reading the table wants whole rows.
    Console(width=200 if not sys.stdout.isatty() else None, highlight=False).print(table)


def _cell(value: object) -> object:
    return EMPTY if value is None or value == "" else value
