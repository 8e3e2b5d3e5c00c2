"""Stack-instance commands (spec/cli.md §4.2): ``create instance``, ``apply -c``, ``delete instance``, ``tasks``.

A create or delete starts a task on the server; ``-s/--show-progress`` follows it (``GET /tasks/{id}?wait=``,
then the instance's statuses) until it ends, prints every step's status and exits 4 (operation failed) when
the task failed. Without it the command prints the task id and returns at once.
"""

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from stackl import errors
from stackl.cli import context, exits, manifests, output
from stackl.client.client import JsonDict, StacklClient

FINAL = ("succeeded", "failed", "cancelled")
WAIT_LIMIT_S = 3600.0

ShowProgress = Annotated[
    bool, typer.Option("-s", "--show-progress", help="Follow the task until it ends and show the statuses.")
]


def status_lines(instance: JsonDict) -> list[str]:
    """One line per step: ``service  functional requirement  target  STATUS  message``."""
    lines = []
    for entry in instance.get("status", []):
        message = str(entry.get("error_message") or "").splitlines()
        lines.append(
            f"  {entry.get('service', ''):12} {entry.get('functional_requirement', ''):24} "
            f"{entry.get('status', ''):12} {message[0] if message else ''}".rstrip()
        )
    return lines


async def follow(client: StacklClient, name: str, task_id: str, *, quiet: bool = False) -> JsonDict:
    """Wait for the task, printing progress as it changes; returns the final task."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    shown = ""
    while True:
        task = await client.get_task(task_id, wait_s=10)
        progress = task.get("progress") or {}
        line = (
            f"task {task_id} {task.get('state')}: {progress.get('ready', 0)} ready, "
            f"{progress.get('running', 0)} running, {progress.get('pending', 0)} pending, "
            f"{progress.get('failed', 0)} failed, {progress.get('skipped', 0)} skipped"
        )
        if line != shown:
            output.info(line, quiet=quiet)
            shown = line
        if task.get("state") in FINAL:
            return task
        if time.monotonic() > deadline:
            raise errors.WaitTimedOut(f"task {task_id} still {task.get('state')}; it keeps running")


async def report(client: StacklClient, name: str, task: JsonDict) -> None:
    """The instance's statuses and outputs after a task, or the task's result when the instance is gone."""
    try:
        instance = await client.get_instance(name)
    except errors.NotFound:
        typer.echo(f"stack instance {name}: removed")
    else:
        typer.echo(f"stack instance {name}:")
        for line in status_lines(instance):
            typer.echo(line)
        outputs = instance.get("instance_outputs") or {}
        if outputs:
            typer.echo("outputs:")
            for key, value in outputs.items():
                typer.echo(f"  {key}: {value}")
    if task.get("state") != "succeeded":
        result = task.get("result") or {}
        raise errors.OperationFailed(
            f"task {task.get('id')} {task.get('state')}: {result.get('error_message') or task.get('error') or ''}"
        )


async def create_and_follow(
    client: StacklClient, name: str, body: JsonDict, *, show_progress: bool, quiet: bool = False
) -> None:
    """Create the instance, print its placement and task, and follow it when asked."""
    placement = await client.create_instance(body)
    task_id = client.last.task_id if client.last is not None else None
    for alias, placed in placement.items():
        typer.echo(f"{alias}: {placed.get('service')} on {', '.join(placed.get('targets', []))}")
    typer.echo(f"creating stack instance {name} (task {task_id})")
    if show_progress and task_id:
        await report(client, name, await follow(client, name, task_id, quiet=quiet))


def body_of(name: str, manifest: Path, *, quiet: bool, params: list[str] | None) -> dict[str, Any]:
    return manifests.instance_body(name, manifests.read_manifest(manifest, quiet=quiet), params=params)


def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Stack instance name.", show_default=False)],
    manifest: Annotated[
        Path, typer.Option("-c", "--config-file", exists=True, help="Instance manifest (YAML).")
    ],
    params: Annotated[
        list[str] | None, typer.Option("-p", "--params", help="JSON object, repeatable.")
    ] = None,
    show_progress: ShowProgress = False,
) -> None:
    """Create stack instance NAME from a manifest (422 when it exists)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        body = body_of(name, manifest, quiet=opts.quiet, params=params)

    async def work(client: StacklClient) -> None:
        await create_and_follow(client, name, body, show_progress=show_progress, quiet=opts.quiet)

    context.run(ctx, work)


def apply_instance(
    ctx: typer.Context, name: str, manifest: Path, *, params: list[str] | None, show_progress: bool
) -> None:
    """``apply -c MANIFEST NAME``: create the instance when absent (updates come with a later release)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        body = body_of(name, manifest, quiet=opts.quiet, params=params)

    async def work(client: StacklClient) -> None:
        try:
            await client.get_instance(name)
        except errors.NotFound:
            await create_and_follow(client, name, body, show_progress=show_progress, quiet=opts.quiet)
            return
        raise errors.InvalidInput(
            f"stack instance {name} exists; updating an instance is not supported by this server yet"
        )

    context.run(ctx, work)


def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Stack instance name.", show_default=False)],
    force: Annotated[
        bool,
        typer.Option("--force", help="Run every delete step despite failures, then remove the instance."),
    ] = False,
    show_progress: ShowProgress = False,
) -> None:
    """Delete stack instance NAME: its delete steps run, then the document is removed."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        result = await client.delete_instance(name, force=force)
        typer.echo(result.get("result", ""))
        task_id = client.last.task_id if client.last is not None else None
        if show_progress and task_id:
            await report(client, name, await follow(client, name, task_id, quiet=opts.quiet))

    context.run(ctx, work)


def tasks(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="[INSTANCE]", help="Only this instance's tasks.")
    ] = None,
) -> None:
    """List tasks, newest first."""

    async def work(client: StacklClient) -> None:
        for task in await client.list_tasks(name):
            result = task.get("result") or {}
            typer.echo(
                f"{task['id']}  {task.get('kind', ''):8} {task.get('stack_instance', ''):20} "
                f"{task.get('state', ''):10} {task.get('created_at', '')}  {result.get('error_message', '')}".rstrip()
            )

    context.run(ctx, work)
