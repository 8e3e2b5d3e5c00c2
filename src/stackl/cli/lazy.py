"""Commands that are imported when they run: ``stackl --help`` and tab completion import no command module.

Every ``stackl`` call used to import every command (the HTTP client, the settings, rich, structlog, the server's
process modules…) before doing anything: 1.1-1.9 s per call, tab completion included. Here the root group knows
each command by name, one-line help and where it lives (``module:attribute``); it imports the module only to
run the command or show its own help. Listings (``stackl --help``, completion of command names) are built from
the table, so they stay fast however many commands there are.

A target is a function (one command) or a ``typer.Typer`` (a group of subcommands, such as ``describe``). Help
is laid out by click itself (rich's layout needs ~160 ms of imports per call).
"""

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# Typer ships its own copy of click; its classes are reached through Typer's (TyperCommand, TyperGroup), so the
# click objects below are typed loosely.
Command = Any
Context = Any

HELP_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@dataclass(frozen=True)
class Lazy:
    """One command: where it lives and the line that describes it in listings."""

    target: str  # "stackl.cli.get:get" or "stackl.cli.describe:app"
    help: str


def load(name: str, entry: Lazy) -> Command:
    """Import the command's module and build its click command."""
    module, _, attribute = entry.target.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        command: Command = typer.main.get_group(found)
        command.context_settings = {**HELP_SETTINGS, **command.context_settings}
    else:
        holder = typer.Typer()
        holder.command(name, context_settings=HELP_SETTINGS)(found)
        command = typer.main.get_command(holder)
    command.name = name
    # The completion options belong to the root command only (a group loaded on its own would get them too).
    command.params = [p for p in command.params if p.name not in ("install_completion", "show_completion")]
    _plain_help(command)
    return command


def _plain_help(command: Command) -> None:
    """Click's own help layout, not rich's: rendering help with rich costs ~160 ms of imports on every call."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for child in getattr(command, "commands", {}).values():
        _plain_help(child)


class LazyGroup(TyperGroup):
    """The root group: the commands of ``LAZY`` are loaded on use (see the module docstring)."""

    lazy: dict[str, Lazy] = {}  # noqa: RUF012 - set once by ``lazy_group``, read only

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Command] = {}
        self._listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        eager = [name for name in super().list_commands(ctx) if name not in self.lazy]
        return [*eager, *self.lazy]

    def get_command(self, ctx: Context, cmd_name: str) -> Command:
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # a listing needs the name and the line only
            return TyperCommand(cmd_name, help=entry.help, short_help=entry.help)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = load(cmd_name, entry)
        return self._loaded[cmd_name]

    @contextmanager
    def _list_only(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def format_help(self, ctx: Context, formatter: Any) -> None:
        with self._list_only():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[Any]:
        with self._list_only():
            return super().shell_complete(ctx, incomplete)


def lazy_group(commands: dict[str, Lazy]) -> type[LazyGroup]:
    """A ``LazyGroup`` class serving ``commands`` (Typer takes a class, not an instance)."""
    return type("StacklGroup", (LazyGroup,), {"lazy": dict(commands)})
