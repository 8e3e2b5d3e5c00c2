"""``stackl tasks`` (spec/cli.md §5.4): list tasks, show one, wait for one, cancel one, print its logs.

``stackl tasks`` alone is ``stackl tasks list``. Tables show the progress as ``done/total`` steps, the subject
that started the task and its duration; ``-o json|yaml`` prints the task objects of api.md §B.3.
"""

from datetime import UTC, datetime
from typing import Annotated

import typer

from stackl.cli import context, logs, output, progress
from stackl.client.client import JsonDict, StacklClient

STEP_COUNTS = ("pending", "queued", "running", "ready", "unchanged", "failed", "skipped", "cancelled")
DONE_COUNTS = ("ready", "unchanged", "failed", "skipped", "cancelled")
LIST_COLUMNS = ["ID", "KIND", "INSTANCE", "STATE", "PROGRESS", "CREATED", "BY", "DURATION"]
STEP_COLUMNS = ["STEP", "STATE", "STATUS", "AGENT", "ATTEMPT", "DURATION", "ERROR"]

app = typer.Typer(
    name="tasks", help="List, show, wait for and cancel tasks; print their logs.", invoke_without_command=True
)

Instance = Annotated[str | None, typer.Option("--instance", help="Only this stack instance's tasks.")]
State = Annotated[str | None, typer.Option("--state", help="queued, running, succeeded, failed…")]
Kind = Annotated[str | None, typer.Option("--kind", help="create, update, delete, restore…")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N tasks.")]
TaskId = Annotated[str, typer.Argument(metavar="ID", help="Task id.", show_default=False)]


def progress_text(task: JsonDict) -> str:
    """``4/6``: finished steps of all steps."""
    counts = task.get("progress") or {}
    total = sum(int(counts.get(k) or 0) for k in STEP_COUNTS)
    done = sum(int(counts.get(k) or 0) for k in DONE_COUNTS)
    return f"{done}/{total}"


def task_duration(task: JsonDict, *, now: datetime | None = None) -> str:
    """From start to end (or to now while it runs); "" before it started."""
    if not task.get("started_at"):
        return ""
    end = task.get("finished_at") or (now or datetime.now(UTC)).isoformat()
    return progress.duration(task["started_at"], end)


def row(task: JsonDict) -> list[str]:
    source = task.get("source") or {}
    return [
        str(task.get("id", "")),
        str(task.get("kind", "")),
        str(task.get("stack_instance", "")),
        str(task.get("state", "")),
        progress_text(task),
        output.local_time(task.get("created_at")),
        str(source.get("subject", "")) if isinstance(source, dict) else "",
        task_duration(task),
    ]


def _print(objects: list[JsonDict], fmt: output.Format, *, single: bool, no_color: bool) -> None:
    output.print_objects(
        objects,
        fmt,
        columns=LIST_COLUMNS,
        rows=lambda task: [row(dict(task))],
        single=single,
        no_color=no_color,
        empty="No tasks.",
    )


@app.callback()
def tasks(
    ctx: typer.Context,
    instance: Instance = None,
    state: State = None,
    kind: Kind = None,
    limit: Limit = 100,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """List tasks, newest first (the same as `stackl tasks list`)."""
    if ctx.invoked_subcommand is None:
        list_tasks(ctx, instance=instance, state=state, kind=kind, limit=limit, fmt=fmt)


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    instance: Instance = None,
    state: State = None,
    kind: Kind = None,
    limit: Limit = 100,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """List tasks, newest first."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        found = await client.list_tasks(instance, state=state, kind=kind, limit=limit)
        _print(found, fmt, single=False, no_color=opts.no_color)

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


@app.command("show")
def show(
    ctx: typer.Context,
    task_id: TaskId,
    steps: Annotated[bool, typer.Option("--steps", help="Also the step table.")] = False,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """Show one task, its result and (--steps) its steps."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        task = await client.get_task(task_id, steps=steps)
        if fmt is not output.Format.TABLE:
            _print([task], fmt, single=True, no_color=opts.no_color)
            return
        show_task(task, steps=steps, no_color=opts.no_color)

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


def show_task(task: JsonDict, *, steps: bool, no_color: bool) -> None:
    """The task for people: fields, result, warnings and the step table."""
    source = task.get("source") or {}
    fields = [
        ("Task", task.get("id")),
        ("Kind", task.get("kind")),
        ("Instance", task.get("stack_instance")),
        ("State", task.get("state")),
        (
            "Progress",
            f"{progress_text(task)} steps, stage {(task.get('progress') or {}).get('stage') or '-'}",
        ),
        ("Created", f"{output.local_time(task.get('created_at'))} by {source.get('subject', '?')}"),
        ("Started", output.local_time(task.get("started_at"))),
        ("Finished", output.local_time(task.get("finished_at"))),
        ("Duration", task_duration(task)),
    ]
    for label, value in fields:
        if value:
            typer.echo(f"{label + ':':10} {value}")
    result = task.get("result") or {}
    if result:
        typer.echo(f"{'Result:':10} {result.get('status', '')} {result.get('error_message') or ''}".rstrip())
        for failed in result.get("failed_steps") or []:
            typer.echo(f"  failed: {failed}")
    for warning in task.get("warnings") or []:
        typer.echo(f"warning: {warning}")
    if steps:
        rows = [step_row(step) for step in task.get("steps") or []]
        typer.echo("")
        output.print_table(STEP_COLUMNS, rows, no_color=no_color)


def step_row(step: JsonDict) -> list[str]:
    message = str(step.get("error_message") or step.get("wait_reason") or "").strip().splitlines()
    return [
        str(step.get("id", "")),
        str(step.get("state", "")),
        str(step.get("status") or ""),
        str(step.get("agent") or ""),
        output.scalar(step.get("attempt")),
        progress.duration(step.get("started_at"), step.get("finished_at")),
        message[0] if message else "",
    ]


@app.command("wait")
def wait(
    ctx: typer.Context,
    task_id: TaskId,
    show_progress: progress.ShowProgress = False,
    timeout: progress.Timeout = None,
    fail_fast: progress.FailFast = False,
) -> None:
    """Wait for a task to end (exit 8 when it failed or was cancelled, 9 on --timeout)."""
    opts = context.options(ctx)
    watch = progress.Watch(
        show=show_progress, wait=True, timeout_s=timeout, fail_fast=fail_fast, quiet=opts.quiet
    )

    async def work(client: StacklClient) -> None:
        task = await progress.follow(client, task_id, watch)
        if task.get("state") != "succeeded":
            raise progress.failure(task)

    context.run(ctx, work)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    task_id: TaskId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the task's record.")] = None,
) -> None:
    """Request cancellation of a task (no rollback follows); exit 5 when it is already final."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        task = await client.cancel_task(task_id, reason)
        show_task(task, steps=False, no_color=opts.no_color)

    context.run(ctx, work)


app.command("logs")(logs.task_logs)
