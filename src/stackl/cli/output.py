"""Rendering of command results: table, YAML, JSON or names, on stdout only (spec/cli.md §2).

Tables are drawn by rich on a terminal and printed as plain aligned text otherwise (no colour, no truncation,
so scripts can cut columns). YAML keeps keys in the server's order and writes multi-line strings (Rego
policies) as ``|`` blocks, so ``get -o yaml`` and ``edit`` show documents the way people write them, and both
``-o yaml`` and ``-o json`` output can be applied back. Messages for people go to stderr through ``info``.
"""

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

COLUMN_GAP = "   "  # between columns of a plain table


class Format(StrEnum):
    """Values of ``-o/--output``."""

    TABLE = "table"
    YAML = "yaml"
    JSON = "json"
    NAME = "name"


FormatOption = Annotated[Format, typer.Option("-o", "--output", help="Output format.", case_sensitive=False)]


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(value: Any) -> str:
    """One YAML document, keys in order, multi-line strings as ``|`` blocks."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def dump_yaml_documents(values: Sequence[Any]) -> str:
    """A multi-document YAML stream (``---`` between documents), as ``apply -d`` reads it."""
    return yaml.dump_all(
        values, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def dump_json(value: Any) -> str:
    """Indented JSON, keys in order."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def is_terminal() -> bool:
    """Whether stdout is a terminal (rich tables) or a pipe or file (plain text)."""
    return sys.stdout.isatty()


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    no_color: bool = False,
    terminal: bool | None = None,
) -> None:
    """A table on stdout: rich on a terminal, plain aligned text otherwise."""
    if terminal if terminal is not None else is_terminal():
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=sys.stdout, no_color=no_color, highlight=False).print(table)
        return
    for line in plain_table(columns, rows):
        typer.echo(line)


def print_diff(text: str, *, no_color: bool = False, terminal: bool | None = None) -> None:
    """A unified diff on stdout, coloured on a terminal."""
    if not (terminal if terminal is not None else is_terminal()) or no_color:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    console = Console(file=sys.stdout, highlight=False)
    for line in text.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        style = "bold" if line.startswith(("+++", "---")) else "cyan" if line.startswith("@@") else style
        console.print(line, style=style, markup=False, soft_wrap=True)


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows aligned on the widest cell of each column, the last column not padded."""
    widths = [max([cell_len(c)] + [cell_len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = []
    for row in [columns, *rows]:
        cells = [cell + " " * (widths[i] - cell_len(cell)) for i, cell in enumerate(row)]
        lines.append(COLUMN_GAP.join(cells).rstrip())
    return lines


def print_objects(
    objects: Sequence[Mapping[str, Any]],
    fmt: Format,
    *,
    columns: Sequence[str],
    rows: Callable[[Mapping[str, Any]], list[list[str]]],
    single: bool = False,
    no_color: bool = False,
    empty: str = "Nothing found.",
    quiet: bool = False,
) -> None:
    """API objects in the chosen format.

    Args:
        objects: what the API returned.
        fmt: table, yaml, json or name.
        columns: the table's header.
        rows: the table rows of one object (several for a SIT with several targets).
        single: one object was asked for by name: JSON and YAML print it alone, not in a list.
        no_color: no colour even on a terminal.
        empty: stderr message when there is nothing to show (table format only).
        quiet: leave that message out.
    """
    if fmt is Format.JSON:
        typer.echo(dump_json(objects[0] if single and objects else list(objects)))
    elif fmt is Format.YAML:
        typer.echo(dump_yaml_documents(list(objects)), nl=False)
    elif fmt is Format.NAME:
        for obj in objects:
            typer.echo(f"{obj.get('type', '')}/{obj.get('name', '')}")
    elif objects:
        print_table(columns, [row for obj in objects for row in rows(obj)], no_color=no_color)
    elif not quiet:
        info(empty)


def info(message: str, *, quiet: bool = False) -> None:
    """A message for people, on stderr (``-q`` silences it)."""
    if not quiet:
        typer.echo(message, err=True)


def local_time(value: Any) -> str:
    """An RFC 3339 time from the API as local time for tables (``2025-05-01 12:15:30``); "" when absent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC).astimezone()
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value).astimezone()
        except ValueError:
            return value
    else:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def join_map(values: Any) -> str:
    """``{a: 1, b: x}`` → ``a=1, b=x``; anything else as text."""
    if isinstance(values, Mapping):
        return ", ".join(f"{k}={scalar(v)}" for k, v in values.items())
    return scalar(values)


def join_list(values: Any) -> str:
    """``[a, b]`` → ``a, b``."""
    if isinstance(values, list | tuple):
        return ", ".join(scalar(v) for v in values)
    return scalar(values)


def scalar(value: Any) -> str:
    """A cell: None → "", booleans as true/false, containers as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
