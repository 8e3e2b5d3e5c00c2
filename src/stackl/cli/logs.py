"""``stackl logs INSTANCE`` and ``stackl tasks logs ID`` (spec/cli.md §5.3, §5.4): job log lines.

Lines come in pages from ``GET /stack_instances/{name}/logs`` (or a task's, or one step's) and print as
``web[0]/vm@production.brussels.dmz | …``; stderr and STACKL's own ``system`` lines are marked. ``-f`` keeps
long-polling from the last cursor: an instance's log until Ctrl-C, a task's until the task is final.
``--tail N`` keeps the last N lines of what is already there, ``--since`` those newer than a duration
(``10m``, ``2h``, ``45s``, ``1d``) or a time. ``-o json`` prints each line object as one JSON line.
"""

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from stackl.cli import context, exits, output
from stackl.client.client import JsonDict, StacklClient

FOLLOW_WAIT_S = 25.0
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Fetch = Callable[[str | None, float], Awaitable[JsonDict]]

Follow = Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines (Ctrl-C stops).")]
Since = Annotated[
    str | None, typer.Option("--since", help="Only lines newer than 10m, 2h… or an RFC 3339 time.")
]
Tail = Annotated[int | None, typer.Option("--tail", min=0, help="Only the last N lines already there.")]
Timestamps = Annotated[bool, typer.Option("--timestamps", help="Prefix each line with its time.")]
Output = Annotated[
    str, typer.Option("-o", "--output", help="text, or json (one line object per line).", show_default=False)
]


def since_time(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``--since``: a duration back from now, or an RFC 3339 time (naive = local time).

    Raises:
        exits.UsageFailure: neither.
    """
    if not value:
        return None
    match = _DURATION.match(value.strip())
    if match:
        delta = timedelta(**{_UNITS[match[2]]: int(match[1])})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise exits.UsageFailure(f"--since: expected 10m, 2h, 1d… or a time, got {value!r}") from None
    return moment.astimezone(UTC) if moment.tzinfo is None else moment


def render(line: JsonDict, *, timestamps: bool = False) -> str:
    """``web[0]/vm@target | text``; ``[stderr]``/``[system]`` before the bar for those streams."""
    label = (
        f"{line.get('service', '?')}[{line.get('replica', 0)}]/{line.get('functional_requirement', '?')}"
        f"@{line.get('infrastructure_target', '')}"
    )
    stream = str(line.get("stream", "stdout"))
    mark = f" [{stream}]" if stream != "stdout" else ""
    prefix = f"{output.local_time(line.get('time'))} " if timestamps else ""
    return f"{prefix}{label}{mark} | {line.get('line', '')}"


def _newer(line: JsonDict, since: datetime | None) -> bool:
    if since is None:
        return True
    try:
        return datetime.fromisoformat(str(line.get("time"))) >= since
    except ValueError:
        return True


async def stream(
    fetch: Fetch,
    *,
    follow: bool,
    until_finished: bool,
    since: datetime | None = None,
    tail: int | None = None,
    as_json: bool = False,
    timestamps: bool = False,
) -> int:
    """Print every line ``fetch`` pages through (then follow); the number printed.

    Args:
        fetch: ``fetch(cursor, wait_s)`` → one log page.
        follow: keep long-polling after the lines already there.
        until_finished: when following, stop once the page says every task involved is final.
        since: only lines at or after this time.
        tail: of the lines already there, only the last N.
        as_json: one JSON object per line instead of text.
        timestamps: prefix the text with the line's local time.
    """
    printed = 0

    def emit(lines: list[JsonDict]) -> None:
        nonlocal printed
        for line in lines:
            typer.echo(
                json.dumps(line, ensure_ascii=False) if as_json else render(line, timestamps=timestamps)
            )
            printed += 1

    backlog: list[JsonDict] = []
    cursor: str | None = None
    while True:  # what is already there
        page = await fetch(cursor, 0.0)
        backlog.extend(line for line in page.get("items") or [] if _newer(line, since))
        cursor = page.get("next_cursor") or cursor
        if not page.get("more"):
            break
    emit(backlog[max(0, len(backlog) - tail) :] if tail is not None else backlog)
    while follow and not (until_finished and page.get("finished")):
        page = await fetch(cursor, FOLLOW_WAIT_S)
        emit([line for line in page.get("items") or [] if _newer(line, since)])
        cursor = page.get("next_cursor") or cursor
    return printed


def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="INSTANCE", help="Stack instance name.", show_default=False)],
    task: Annotated[str | None, typer.Option("--task", help="Only this task's lines.")] = None,
    service: Annotated[str | None, typer.Option("--service", help="Only this alias.")] = None,
    fr: Annotated[str | None, typer.Option("--fr", help="Only this functional requirement.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Only this infrastructure target.")] = None,
    follow: Follow = False,
    since: Since = None,
    tail: Tail = None,
    timestamps: Timestamps = False,
    fmt: Output = "text",
) -> None:
    """Print the job logs of a stack instance's tasks (oldest task first)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        after = since_time(since)
        as_json = _json_format(fmt)
    filters = {"task": task, "service": service, "functional_requirement": fr, "target": target}

    async def work(client: StacklClient) -> None:
        async def fetch(cursor: str | None, wait_s: float) -> JsonDict:
            return await client.instance_logs(name, cursor=cursor, wait_s=wait_s, **filters)

        printed = await stream(
            fetch,
            follow=follow,
            until_finished=task is not None,
            since=after,
            tail=tail,
            as_json=as_json,
            timestamps=timestamps,
        )
        if not printed and not follow:
            output.info(f"No log lines for stack instance {name}.", quiet=opts.quiet)

    context.run(ctx, work, json_errors=as_json)


def task_logs(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.", show_default=False)],
    step: Annotated[str | None, typer.Option("--step", help="Only this step: alias/replica/fr.")] = None,
    attempt: Annotated[int | None, typer.Option("--attempt", min=1, help="With --step: one attempt.")] = None,
    follow: Follow = False,
    tail: Tail = None,
    timestamps: Timestamps = False,
    fmt: Output = "text",
) -> None:
    """Print the job logs of one task, or of one of its steps."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        as_json = _json_format(fmt)
        if step is not None and len(step.split("/")) != 3:
            raise exits.UsageFailure(f"--step: expected alias/replica/fr, got {step!r}")

    async def work(client: StacklClient) -> None:
        async def fetch(cursor: str | None, wait_s: float) -> JsonDict:
            if step is not None:
                return await client.step_log(task_id, step, attempt=attempt, cursor=cursor, wait_s=wait_s)
            return await client.task_logs(task_id, cursor=cursor, wait_s=wait_s)

        printed = await stream(
            fetch, follow=follow, until_finished=True, tail=tail, as_json=as_json, timestamps=timestamps
        )
        if not printed:
            output.info(f"No log lines for task {task_id}.", quiet=opts.quiet)

    context.run(ctx, work, json_errors=as_json)


def _json_format(fmt: Any) -> bool:
    value = str(fmt).lower()
    if value not in ("text", "table", "json"):
        raise exits.UsageFailure(f"-o/--output: expected text or json, got {fmt!r}")
    return value == "json"
