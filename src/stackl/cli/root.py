"""The global options of every command and the wiring of the REST-client verbs into the root app.

``stackl.main`` owns the root Typer app (it also adds the process commands ``server``, ``worker``, ``db``…)
and calls ``register(app)``: this module puts the global options of spec/cli.md §1 on the root callback, where
they are parsed once into ``context.Options`` for every command, and adds each verb group. The list of
commands lives here only, so a new verb is one line.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from stackl import __version__
from stackl.cli import (
    apply,
    audit,
    connect,
    context,
    create,
    delete,
    describe,
    drift,
    edit,
    events,
    get,
    history,
    info,
    instances,
    logs,
    plan,
    policy,
    tasks,
    token,
)

HELP_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def register(app: typer.Typer) -> None:
    """Install the global options and every REST-client command on the root app."""
    app.callback(no_args_is_help=True, context_settings=HELP_SETTINGS)(root)
    commands: dict[str, Callable[..., None]] = {
        "connect": connect.connect,
        "info": info.info,
        "apply": apply.apply,
        "get": get.get,
        "delete": delete.delete,
        "edit": edit.edit,
        "history": history.history,
        "diff": history.diff,
        "restore": history.restore,
        "plan": plan.plan,
        "logs": logs.logs,
        "audit": audit.audit,
        "events": events.events,
        "drift": drift.drift,
    }
    for name, command in commands.items():
        app.command(name, context_settings=HELP_SETTINGS)(command)
    create_group = typer.Typer(
        name="create", help="Create stack instances, snapshots and policy templates.", no_args_is_help=True
    )
    create_group.command("snapshot", context_settings=HELP_SETTINGS)(create.snapshot)
    create_group.command("policy", context_settings=HELP_SETTINGS)(create.policy)
    create_group.command("instance", context_settings=HELP_SETTINGS)(instances.create)
    app.add_typer(create_group, name="create", context_settings=HELP_SETTINGS)
    policy_group = typer.Typer(
        name="policy", help="Evaluate Rego policies on the server.", no_args_is_help=True
    )
    policy_group.command("eval", context_settings=HELP_SETTINGS)(policy.evaluate)
    app.add_typer(policy_group, name="policy", context_settings=HELP_SETTINGS)
    update_group = typer.Typer(
        name="update", help="Update stack instances and their outputs.", no_args_is_help=True
    )
    update_group.command("instance", context_settings=HELP_SETTINGS)(instances.update_instance)
    update_group.command("outputs", context_settings=HELP_SETTINGS)(instances.update_outputs)
    app.add_typer(update_group, name="update", context_settings=HELP_SETTINGS)
    app.add_typer(describe.app, name="describe", context_settings=HELP_SETTINGS)
    app.add_typer(tasks.app, name="tasks", context_settings=HELP_SETTINGS)
    app.add_typer(token.app, name="token", context_settings=HELP_SETTINGS)


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
    ctx.obj = context.Options(
        server=server,
        token=token,
        http_timeout_s=http_timeout,
        ca_file=ca_file,
        quiet=quiet,
        verbose=verbose,
        no_color=no_color,
    )
