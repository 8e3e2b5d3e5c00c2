"""``stackl events``: follow the server's event stream (``GET /events``, api.md B.10).

Prints one line per event (``<time> <kind> <type>/<name> <details>``) or, with ``-o json``, the event objects
one per line. Filters map to the query: ``--kind`` (repeatable, ``task.*`` allowed), ``--instance``,
``--type``, ``--name``; ``--after ID`` resumes after an event id. The stream is followed until Ctrl-C; when
the connection drops (a server restarting, a load balancer switching servers) the command reconnects with
``Last-Event-ID`` so nothing seen is printed twice. ``--no-follow`` prints what the server has buffered
after ``--after`` and stops.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import typer

from stackl import __version__, errors
from stackl.cli import context, exits, output
from stackl.client import problems

RECONNECT_S = 3.0


def http_client(ctx: typer.Context, *, timeout_s: float | None = None) -> httpx.AsyncClient:
    """An HTTP client on the configured server and token (for the streaming and ad-hoc reads here)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        connection = context.resolve(opts)
    headers = {"User-Agent": f"stackl-cli/{__version__}"}
    if connection.token:
        headers["Authorization"] = f"Bearer {connection.token}"
    transport = context.TRANSPORT_FACTORY() if context.TRANSPORT_FACTORY is not None else None
    return httpx.AsyncClient(
        base_url=connection.server,
        headers=headers,
        timeout=httpx.Timeout(
            timeout_s or opts.http_timeout_s, read=None if timeout_s is None else timeout_s
        ),
        verify=context.ca_bundle(opts),
        transport=transport,
    )


def check(response: httpx.Response) -> None:
    """Raise the StacklError of an error answer."""
    if response.status_code >= 400:
        raise problems.from_response(
            response.status_code, response.content, response.headers.get("content-type", "")
        )


def render(event: dict[str, Any]) -> str:
    """``<time> <kind> <type>/<name> <details>``."""
    resource = event.get("resource") or {}
    data = event.get("data") or {}
    details = ""
    if event.get("kind") == "step.updated":
        details = (
            f"{data.get('step', '')} {data.get('status', '')} {data.get('error_message') or ''}".rstrip()
        )
    elif str(event.get("kind", "")).startswith("document."):
        details = f"revision {data.get('revision', '')}"
    elif str(event.get("kind", "")).startswith("task."):
        details = f"{event.get('task_id', '')} {data.get('kind', '')}"
    elif str(event.get("kind", "")).startswith("agent."):
        details = str(data.get("hostname", ""))
    return (
        f"{output.local_time(event.get('time'))} {event.get('kind', '')} "
        f"{resource.get('type', '')}/{resource.get('name', '')} {details}"
    ).rstrip()


async def sse_messages(response: httpx.Response) -> AsyncIterator[tuple[str, str, str]]:
    """(id, event, data) of each server-sent message."""
    event_id, kind = "", "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event_id, kind, "\n".join(data)
            event_id, kind, data = "", "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                kind = value
            elif field == "data":
                data.append(value)


async def follow(
    http: httpx.AsyncClient, params: list[tuple[str, str]], *, after: str | None, as_json: bool, once: bool
) -> int:
    """Print events until interrupted (or, ``once``, the buffered ones); the number printed."""
    printed = 0
    cursor = after
    if once:
        query = [*params, *([("after", cursor)] if cursor else []), ("limit", "1000")]
        response = await http.get("/events", params=tuple(query), headers={"Accept": "application/json"})
        check(response)
        for event in response.json().get("items") or []:
            typer.echo(json.dumps(event, ensure_ascii=False) if as_json else render(event))
            printed += 1
        return printed
    while True:
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": cursor} if cursor else {})}
        try:
            async with http.stream("GET", "/events", params=tuple(params), headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    check(response)
                async for event_id, kind, data in sse_messages(response):
                    if kind == "reset":
                        typer.echo("warning: events were missed (older than the server keeps)", err=True)
                        continue
                    cursor = event_id or cursor
                    event = json.loads(data)
                    typer.echo(json.dumps(event, ensure_ascii=False) if as_json else render(event))
                    printed += 1
        except httpx.TransportError:
            pass
        await asyncio.sleep(RECONNECT_S)


def events(
    ctx: typer.Context,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only these kinds (repeatable; task.* allowed).")
    ] = None,
    instance: Annotated[
        str | None, typer.Option("--instance", help="Only this stack instance's events.")
    ] = None,
    doc_type: Annotated[
        str | None, typer.Option("--type", help="Only events on resources of this type.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only events on resources of this name.")] = None,
    after: Annotated[str | None, typer.Option("--after", help="Resume after this event id.")] = None,
    follow_: Annotated[
        bool,
        typer.Option("--follow/--no-follow", help="Keep following (default) or print the buffer and stop."),
    ] = True,
    fmt: Annotated[str, typer.Option("-o", "--output", help="text, or json (one event per line).")] = "text",
) -> None:
    """Follow the server's events: document, task, step and agent changes."""
    opts = context.options(ctx)
    as_json = fmt == "json"
    params = [("kind", k) for k in kind or []]
    params += [(k, v) for k, v in (("stack_instance", instance), ("type", doc_type), ("name", name)) if v]

    async def main() -> int:
        async with http_client(ctx, timeout_s=None if follow_ else opts.http_timeout_s) as http:
            try:
                return await follow(http, params, after=after, as_json=as_json, once=not follow_)
            except httpx.TransportError as exc:
                raise errors.ServerUnreachable(f"cannot reach the server: {exc}") from exc

    exits.run(main(), json_errors=as_json, quiet=opts.quiet)
