"""``stackl token create|list|revoke`` (spec/cli.md §5.5): API tokens, through the API (admin).

``create`` prints the token once (``-q``: the token alone, for scripts); the server keeps only its hash.
``--expires`` takes ``30d``, ``12h``, ``45m`` or seconds. ``--subject`` defaults to the operating-system user.
"""

import getpass
import re
from typing import Annotated

import typer

from stackl.cli import context, exits, output
from stackl.client.client import JsonDict, StacklClient

LIST_COLUMNS = ["ID", "SUBJECT", "ROLE", "AGENT", "CREATED", "EXPIRES", "LAST USED"]
_DURATION = re.compile(r"^(?P<n>\d+)(?P<unit>[smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

app = typer.Typer(name="token", help="Create, list and revoke API tokens (admin).", no_args_is_help=True)


def parse_duration(text: str) -> int:
    """``30d`` → seconds.

    Raises:
        exits.UsageFailure: not a duration.
    """
    match = _DURATION.match(text.strip().lower())
    if match is None or int(match["n"]) == 0:
        raise exits.UsageFailure(f"invalid duration {text!r}: use e.g. 30d, 12h, 45m or a number of seconds")
    return int(match["n"]) * _UNITS[match["unit"]]


def _row(token: JsonDict) -> list[str]:
    return [
        str(token.get("id", "")),
        str(token.get("subject", "")),
        str(token.get("role", "")),
        str(token.get("agent") or ""),
        output.local_time(token.get("created_at")),
        output.local_time(token.get("expires_at")) or "never",
        output.local_time(token.get("last_used_at")),
    ]


@app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option("--role", help="admin, operator, viewer or agent.")],
    subject: Annotated[
        str | None, typer.Option("--subject", help="Who the token is for (default: you).")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Agent name (agent tokens only).")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime: 30d, 12h, 45m…")] = None,
    description: Annotated[str | None, typer.Option("--description", help="What it is for.")] = None,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """Create a token and print it (only this once)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        body: JsonDict = {"subject": subject or getpass.getuser(), "role": role}
        if agent:
            body["agent"] = agent
        if description:
            body["description"] = description
        if expires:
            body["expires_in_s"] = parse_duration(expires)

    async def work(client: StacklClient) -> None:
        created = await client.create_token(body)
        if fmt is not output.Format.TABLE:
            output.print_objects([created], fmt, columns=[], rows=lambda _: [], single=True)
            return
        if opts.quiet:
            typer.echo(created["token"])
            return
        typer.echo(created["token"])
        typer.echo(
            f"Token {created['id']} for {created['subject']} ({created['role']}"
            + (f", agent {created['agent']}" if created.get("agent") else "")
            + f"), expires {output.local_time(created.get('expires_at')) or 'never'}. "
            "It is shown only this once.",
            err=True,
        )

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    include_revoked: Annotated[bool, typer.Option("--all", help="Also revoked tokens.")] = False,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """List tokens (never their secrets)."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        found = await client.list_tokens(include_revoked=include_revoked)
        output.print_objects(
            found,
            fmt,
            columns=LIST_COLUMNS,
            rows=lambda token: [_row(dict(token))],
            single=False,
            no_color=opts.no_color,
            empty="No tokens.",
        )

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="Token id (tok_…).", show_default=False)],
) -> None:
    """Revoke a token: it stops working at once."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        await client.revoke_token(token_id)
        output.info(f"Revoked {token_id}", quiet=opts.quiet)

    context.run(ctx, work)
