"""The global options of every command and the wiring of the REST-client verbs into the root app.

``stackl.main`` owns the root Typer app (it also adds the process commands ``server``, ``worker``, ``db``…)
and calls ``register(app)``: this module puts the global options of spec/cli.md §1 on the root callback, where
they are parsed once into ``context.Options`` for every command, and adds each verb group. The list of
commands lives here only, so a new verb is one line.
"""

from pathlib import Path
from typing import Annotated

import typer

from stackl import __version__
from stackl.cli.lazy import HELP_SETTINGS, Lazy
from stackl.cli.options import Options

# Every command: name → where it lives and its line in `stackl --help` (the command's own first docstring
# line; tests/unit/cli/test_lazy.py keeps them equal). Order = the order of `stackl --help`.
COMMANDS: dict[str, Lazy] = {
    "connect": Lazy(
        "stackl.cli.connect:connect", "Save the server URL (and token) used by every later command."
    ),
    "info": Lazy(
        "stackl.cli.info:info",
        "Show the server, its version and database, the auth state and the caller's identity.",
    ),
    "apply": Lazy(
        "stackl.cli.apply:apply",
        "Create or update every document of DIR in one bulk apply, or (-c) create or update INSTANCE.",
    ),
    "get": Lazy("stackl.cli.get:get", "Show one document or list every document of a kind."),
    "delete": Lazy(
        "stackl.cli.delete:delete",
        "Delete a document; a referenced document is kept (exit 5) unless --force is given.",
    ),
    "edit": Lazy(
        "stackl.cli.edit:edit", "Edit a document in $VISUAL or $EDITOR and replace it if it was changed."
    ),
    "history": Lazy("stackl.cli.history:history", "List the revisions of a document, newest first."),
    "diff": Lazy(
        "stackl.cli.history:diff", "Show what changed between two revisions, or what `apply -d` would change."
    ),
    "restore": Lazy(
        "stackl.cli.history:restore",
        "Restore a snapshot, or write revision N of a document again as its newest revision.",
    ),
    "plan": Lazy(
        "stackl.cli.plan:plan", "Show the placement, its explanation and the step plan without deploying."
    ),
    "logs": Lazy(
        "stackl.cli.logs:logs", "Print the job logs of a stack instance's tasks (oldest task first)."
    ),
    "audit": Lazy("stackl.cli.audit:audit", "Show who changed what, when, and with which outcome."),
    "events": Lazy(
        "stackl.cli.events:events", "Follow the server's events: document, task, step and agent changes."
    ),
    "drift": Lazy(
        "stackl.cli.drift:drift", "List drifted stack instances, show one's proposed update, or apply it."
    ),
    "create": Lazy("stackl.cli.groups:create_app", "Create stack instances, snapshots and policy templates."),
    "policy": Lazy("stackl.cli.groups:policy_app", "Evaluate Rego policies on the server."),
    "update": Lazy("stackl.cli.groups:update_app", "Update stack instances and their outputs."),
    "describe": Lazy("stackl.cli.describe:app", "Show everything about one object."),
    "tasks": Lazy("stackl.cli.tasks:app", "List, show, wait for and cancel tasks; print their logs."),
    "token": Lazy("stackl.cli.token:app", "Create, list and revoke API tokens (admin)."),
}


def register(app: typer.Typer) -> None:
    """Install the global options on the root app (the commands come from ``COMMANDS``, see ``stackl.main``)."""
    app.callback(no_args_is_help=True, context_settings=HELP_SETTINGS)(root)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"stackl {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL (else STACKL_URL, ~/.stackl/config, local).")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="API token (else STACKL_TOKEN, ~/.stackl/credentials).")
    ] = None,
    http_timeout: Annotated[
        float, typer.Option("--http-timeout", min=0.1, help="Limit of one HTTP request, in seconds.")
    ] = 30.0,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", exists=True, dir_okay=False, help="CA bundle to verify the server's TLS."),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only results and errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="HTTP trace on stderr, tokens masked.")
    ] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour, even on a terminal.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the CLI version and exit."
        ),
    ] = False,
) -> None:
    """STACKL: model infrastructure, describe applications, automate their orchestration."""
    ctx.obj = Options(
        server=server,
        token=token,
        http_timeout_s=http_timeout,
        ca_file=ca_file,
        quiet=quiet,
        verbose=verbose,
        no_color=no_color,
    )
