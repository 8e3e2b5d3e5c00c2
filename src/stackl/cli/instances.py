"""Stack-instance commands (spec/cli.md §4.2): create, apply -c, update instance, update outputs, delete.

A create, update or delete starts a task on the server (its id comes back in ``Stackl-Task-Id``);
``-s/--show-progress`` and ``--wait`` follow it (``cli/progress.py``), then the instance's statuses and
outputs are printed, and a failed task exits 8. Without them the command prints the task id and returns.
``apply -c MANIFEST NAME`` creates the instance when it does not exist and otherwise updates it with the same
values (a manifest naming other templates than the instance's is a usage error); ``update instance`` sends no
``services`` key, so the extra services of the instance are kept.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from stackl import errors
from stackl.cli import context, exits, manifests, output, progress
from stackl.client.client import JsonDict, StacklClient

ShowProgress = progress.ShowProgress  # shared with `delete instance`
TEMPLATES = ("stack_infrastructure_template", "stack_application_template")
CREATE_ONLY = (*TEMPLATES,)

Name = Annotated[str, typer.Argument(metavar="NAME", help="Stack instance name.", show_default=False)]
Params = Annotated[list[str] | None, typer.Option("-p", "--params", help="JSON object, repeatable.")]
Tags = Annotated[str | None, typer.Option("-t", "--tags", help="JSON object of required placement tags.")]
Replicas = Annotated[str | None, typer.Option("-r", "--replicas", help="JSON object alias → count.")]
Secrets = Annotated[str | None, typer.Option("--secrets", help="JSON object of instance secrets.")]
ServiceParams = Annotated[
    str | None, typer.Option("-e", "--service-params", help="JSON object alias → parameters.")
]
ServiceSecrets = Annotated[str | None, typer.Option("--service-secrets", help="JSON object alias → secrets.")]
Rollback = Annotated[bool, typer.Option("--rollback", help="Roll back the task's steps if it fails.")]
ForceRerun = Annotated[
    bool, typer.Option("--force-rerun", help="Re-run every step, not only those whose inputs changed.")
]


def status_lines(instance: JsonDict) -> list[str]:
    """One line per step: ``service  functional requirement  STATUS  message``."""
    lines = []
    for entry in instance.get("status", []):
        message = str(entry.get("error_message") or "").splitlines()
        lines.append(
            f"  {entry.get('service', ''):12} {entry.get('functional_requirement', ''):24} "
            f"{entry.get('status', ''):12} {message[0] if message else ''}".rstrip()
        )
    return lines


async def report(client: StacklClient, name: str, task: JsonDict, targets: dict[str, str]) -> None:
    """The instance's statuses and outputs after a task (or that it is gone); a failed task raises.

    Raises:
        OperationFailed: the task ended ``failed`` or ``cancelled``.
    """
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
                typer.echo(f"  {key}: {output.scalar(value)}")
    if task.get("state") != "succeeded":
        raise progress.failure(task, targets)


async def watch_task(client: StacklClient, name: str, watch: progress.Watch) -> None:
    """Follow the task of the last response when asked, then report the instance."""
    task_id = client.last.task_id if client.last is not None else None
    if not watch.active or not task_id:
        return
    try:
        watch.targets = progress.targets_of(await client.get_instance(name))
    except errors.NotFound:
        watch.targets = {}
    task = await progress.follow(client, task_id, watch)
    await report(client, name, task, watch.targets)


async def create_and_follow(client: StacklClient, name: str, body: JsonDict, watch: progress.Watch) -> None:
    """Create the instance, print its placement and task, and follow it when asked."""
    placement = await client.create_instance(body)
    task_id = client.last.task_id if client.last is not None else None
    for alias, placed in placement.items():
        typer.echo(f"{alias}: {placed.get('service')} on {', '.join(placed.get('targets', []))}")
    typer.echo(f"creating stack instance {name} (task {task_id})")
    await watch_task(client, name, watch)


async def update_and_follow(client: StacklClient, name: str, body: JsonDict, watch: progress.Watch) -> None:
    """Update the instance (``PUT /stack_instances``), print the task, and follow it when asked."""
    answer = await client.update_instance(body)
    task_id = client.last.task_id if client.last is not None else None
    message = answer if isinstance(answer, str) else "Stack instance updating"
    typer.echo(f"{message}: {name} (task {task_id})" if task_id else f"{message}: {name}")
    await watch_task(client, name, watch)


def update_body(body: JsonDict) -> JsonDict:
    """A create body as an update body: the templates are dropped (an update cannot change them)."""
    return {key: value for key, value in body.items() if key not in CREATE_ONLY}


def check_templates(name: str, body: JsonDict, instance: JsonDict) -> None:
    """An update from a manifest naming other templates than the instance's is a usage error (§4.2).

    Raises:
        exits.UsageFailure: a template differs.
    """
    for key in TEMPLATES:
        wanted = body.get(key)
        if wanted and instance.get(key) and wanted != instance.get(key):
            raise exits.UsageFailure(
                f"stack instance {name} uses {key} {instance.get(key)!r}, the manifest names {wanted!r}; "
                "an update cannot change the templates (delete and re-create the instance)"
            )


def create(
    ctx: typer.Context,
    name: Name,
    sit: Annotated[
        str | None, typer.Option("--stack-infrastructure-template", help="SIT name (or from -c).")
    ] = None,
    sat: Annotated[
        str | None, typer.Option("--stack-application-template", help="SAT name (or from -c).")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("-c", "--config-file", exists=True, help="Instance manifest (YAML).")
    ] = None,
    params: Params = None,
    tags: Tags = None,
    replicas: Replicas = None,
    secrets: Secrets = None,
    service_params: ServiceParams = None,
    service_secrets: ServiceSecrets = None,
    rollback: Rollback = False,
    show_progress: ShowProgress = False,
    wait: progress.Wait = False,
    timeout: progress.Timeout = None,
) -> None:
    """Create stack instance NAME (422 when it exists)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        loaded = manifests.read_manifest(manifest, quiet=opts.quiet) if manifest is not None else {}
        given = {"stack_infrastructure_template": sit, "stack_application_template": sat}
        loaded |= {key: value for key, value in given.items() if value}
        missing = [f"--{key.replace('_', '-')}" for key in TEMPLATES if not loaded.get(key)]
        if missing:
            raise exits.UsageFailure(f"missing option {' and '.join(missing)}")
        body = manifests.instance_body(
            name,
            loaded,
            params=params,
            tags=tags,
            replicas=replicas,
            secrets=secrets,
            service_params=service_params,
            service_secrets=service_secrets,
        )
        if rollback:
            body["rollback"] = True
    watch = progress.Watch(show=show_progress, wait=wait, timeout_s=timeout, quiet=opts.quiet)

    async def work(client: StacklClient) -> None:
        await create_and_follow(client, name, body, watch)

    context.run(ctx, work)


def apply_instance(
    ctx: typer.Context, name: str, manifest: Path, overrides: dict[str, Any], watch: progress.Watch
) -> None:
    """``apply -c MANIFEST NAME``: create the instance when absent, else update it with the same values.

    ``overrides`` are the command-line options of ``manifests.instance_body`` plus ``rollback`` and
    ``force_rerun``.
    """
    opts = context.options(ctx)
    overrides = dict(overrides)
    flags = {key: True for key in ("rollback", "force_rerun") if overrides.pop(key, False)}
    with exits.reporting(quiet=opts.quiet):
        body = manifests.instance_body(name, manifests.read_manifest(manifest, quiet=opts.quiet), **overrides)
        body |= flags

    async def work(client: StacklClient) -> None:
        try:
            instance = await client.get_instance(name)
        except errors.NotFound:
            missing = [key for key in TEMPLATES if not body.get(key)]
            if missing:
                raise exits.UsageFailure(
                    f"{manifest}: stack instance {name} does not exist, and creating it needs "
                    f"{' and '.join(missing)}"
                ) from None
            await create_and_follow(
                client, name, {k: v for k, v in body.items() if k != "force_rerun"}, watch
            )
            return
        check_templates(name, body, instance)
        await update_and_follow(client, name, update_body(body), watch)

    context.run(ctx, work)


def update_instance(
    ctx: typer.Context,
    name: Name,
    params: Params = None,
    secrets: Secrets = None,
    disable_invocation: Annotated[
        bool, typer.Option("-d", "--disable-invocation", help="Change the document only; run no step.")
    ] = False,
    replicas: Replicas = None,
    tags: Tags = None,
    service_params: ServiceParams = None,
    service_secrets: ServiceSecrets = None,
    force_rerun: ForceRerun = False,
    rollback: Rollback = False,
    show_progress: ShowProgress = False,
    wait: progress.Wait = False,
    timeout: progress.Timeout = None,
) -> None:
    """Update stack instance NAME: parameters, secrets, replicas, tags; its extra services are kept."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        body = manifests.instance_body(
            name,
            {},
            params=params,
            tags=tags,
            replicas=replicas,
            secrets=secrets,
            service_params=service_params,
            service_secrets=service_secrets,
        )
    body.setdefault("params", {})
    for flag, on in (
        ("disable_invocation", disable_invocation),
        ("force_rerun", force_rerun),
        ("rollback", rollback),
    ):
        if on:
            body[flag] = True
    watch = progress.Watch(show=show_progress, wait=wait, timeout_s=timeout, quiet=opts.quiet)

    async def work(client: StacklClient) -> None:
        await update_and_follow(client, name, body, watch)

    context.run(ctx, work)


def update_outputs(
    ctx: typer.Context,
    name: Name,
    target: Annotated[
        str, typer.Option("-i", "--infrastructure-target", help="Target of the replica.", show_default=False)
    ],
    service: Annotated[
        str, typer.Option("-s", "--service", help="Alias of the replica.", show_default=False)
    ],
    params: Annotated[str, typer.Option("-p", "--params", help="JSON object of outputs.")] = "{}",
) -> None:
    """Merge outputs into stack instance NAME and one of its replicas (``POST /outputs``)."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        outputs = manifests.json_option(params, option="-p/--params")
    body = {"stack_instance": name, "service": service, "infrastructure_target": target, "outputs": outputs}

    async def work(client: StacklClient) -> None:
        await client.add_outputs(body)
        typer.echo("Updated outputs")

    context.run(ctx, work)


def delete(
    ctx: typer.Context,
    name: str,
    *,
    force: bool,
    show_progress: bool,
    wait: bool = False,
    timeout: float | None = None,
) -> None:
    """Delete stack instance NAME: its delete steps run, then the document is removed."""
    opts = context.options(ctx)
    watch = progress.Watch(show=show_progress, wait=wait, timeout_s=timeout, quiet=opts.quiet)

    async def work(client: StacklClient) -> None:
        targets: dict[str, str] = {}
        if watch.active:
            try:
                targets = progress.targets_of(await client.get_instance(name))
            except errors.NotFound:
                targets = {}
        result = await client.delete_instance(name, force=force)
        task_id = client.last.task_id if client.last is not None else None
        typer.echo(result.get("result", ""))
        if watch.active and task_id:
            watch.targets = targets
            await report(client, name, await progress.follow(client, task_id, watch), targets)

    context.run(ctx, work)
