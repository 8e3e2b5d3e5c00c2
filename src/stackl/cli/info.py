"""``stackl info``: which server the CLI talks to, what it runs, and who the CLI is there (spec/cli.md §4).

One screen to check a setup: the URL and where it came from (flag, variable, config file), the server's host
name (``/about``), version and database (``/version``), whether auth is on, and the subject and roles of the
token (``/auth/whoami``; a server without that endpoint is shown as such). A refused token still prints what
could be learnt, then exits 6.
"""

from typing import Annotated, Any

import typer

from stackl import errors
from stackl.cli import context, exits, output
from stackl.client.client import StacklClient, redact_url


def info(
    ctx: typer.Context,
    fmt: Annotated[
        output.Format, typer.Option("-o", "--output", help="table (key: value lines), yaml or json.")
    ] = output.Format.TABLE,
) -> None:
    """Show the server, its version and database, the auth state and the caller's identity."""
    if fmt is output.Format.NAME:
        raise typer.BadParameter("info prints table, yaml or json", param_hint="'-o'")
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        connection = context.resolve(opts)

    async def work(client: StacklClient) -> None:
        version = await client.version()
        facts: dict[str, Any] = {
            "server": redact_url(connection.server),
            "server_from": connection.server_source,
            "host": await client.about(),
            "version": version.get("version"),
            "api": version.get("api"),
            "compat": version.get("compat"),
            "database": version.get("database"),
            "auth_enabled": version.get("auth_enabled"),
            "token_from": connection.token_source,
        }
        refused: errors.StacklError | None = None
        try:
            who = await client.whoami()
        except (errors.Unauthenticated, errors.Forbidden) as exc:
            who, refused = None, exc
        facts["subject"] = who.get("subject") if who else None
        facts["roles"] = list(who.get("roles") or []) if who else []
        _print(facts, fmt, whoami_missing=who is None and refused is None)
        if refused is not None:
            raise refused

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


def _print(facts: dict[str, Any], fmt: output.Format, *, whoami_missing: bool) -> None:
    if fmt is output.Format.JSON:
        typer.echo(output.dump_json(facts))
        return
    if fmt is output.Format.YAML:
        typer.echo(output.dump_yaml(facts), nl=False)
        return
    auth = "enabled" if facts["auth_enabled"] else "disabled"
    if facts["subject"]:
        identity = f"{facts['subject']} ({', '.join(facts['roles']) or 'no role'})"
    else:
        identity = "unknown (the server has no /auth/whoami)" if whoami_missing else "not authenticated"
    lines = [
        ("server", f"{facts['server']} (from {facts['server_from']})"),
        ("host", facts["host"]),
        ("version", f"{facts['version']} (api {facts['api']}, compat {facts['compat']})"),
        ("database", facts["database"]),
        ("auth", auth),
        ("token", f"from {facts['token_from']}" if facts["token_from"] else "none"),
        ("subject", identity),
    ]
    for key, value in lines:
        typer.echo(f"{key + ':':<10}{output.scalar(value)}")
