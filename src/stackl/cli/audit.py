"""``stackl audit`` (spec/cli.md §5.5): the audit log, newest first (admin)."""

from typing import Annotated

import typer

from stackl.cli import context, output
from stackl.client.client import JsonDict, StacklClient

COLUMNS = ["TIME", "SUBJECT", "ACTION", "RESOURCE", "RESULT", "STATUS"]


def _row(entry: JsonDict) -> list[str]:
    resource = entry.get("resource") or {}
    what = "/".join(str(p) for p in (resource.get("type"), resource.get("name")) if p)
    return [
        output.local_time(entry.get("time")),
        str(entry.get("subject", "")),
        str(entry.get("action", "")),
        what,
        str(entry.get("result", "")),
        str(entry.get("status_code", "")),
    ]


def audit(
    ctx: typer.Context,
    subject: Annotated[str | None, typer.Option("--subject", help="Only this subject.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="create, update, delete, restore…")] = None,
    resource_type: Annotated[str | None, typer.Option("--type", help="Only this resource type.")] = None,
    result: Annotated[str | None, typer.Option("--result", help="success, denied or error.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time (RFC 3339).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most N entries.")] = 100,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """Show who changed what, when, and with which outcome."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        found = await client.list_audit(
            limit=limit,
            subject=subject,
            action=action,
            resource_type=resource_type,
            result=result,
            since=since,
        )
        output.print_objects(
            found,
            fmt,
            columns=COLUMNS,
            rows=lambda entry: [_row(dict(entry))],
            single=False,
            no_color=opts.no_color,
            empty="No audit entries.",
        )

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)
