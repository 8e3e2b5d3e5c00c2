"""``stackl delete KIND NAME [--force]``: delete a configuration document or a snapshot (spec/cli.md §4).

A document other documents still reference is refused by the server (409 ``referenced``); the error lists
every referrer and the command exits 5, so nothing is left dangling by accident. ``--force`` deletes anyway
and the server's warnings name the references left dangling. Snapshots go through the STACKL 0.5 path and
print its result text.

``delete instance NAME`` starts the instance's delete task through the 0.5 path instead (``--force`` runs every
delete step despite failures, ``-s`` follows the task): see ``cli/instances.py``.
"""

from typing import Annotated

import typer

from stackl.cli import context, instances, kinds, progress
from stackl.client.client import StacklClient

DELETABLE_TYPES = (*kinds.CONFIGURATION_TYPES, "snapshot", "stack_instance")


def delete(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(
            metavar="KIND",
            help="instance, environment, location, zone, sat, sit, service, functional-requirement, "
            "policy-template or snapshot.",
            autocompletion=kinds.complete,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the document.", show_default=False)],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even when other documents reference it; instances: despite failed delete steps.",
        ),
    ] = False,
    show_progress: instances.ShowProgress = False,
    wait: progress.Wait = False,
    timeout: progress.Timeout = None,
) -> None:
    """Delete a document; a referenced document is kept (exit 5) unless --force is given."""
    doc_type = kinds.resolve(kind, allowed=DELETABLE_TYPES, command="delete")
    if doc_type == "stack_instance":
        instances.delete(ctx, name, force=force, show_progress=show_progress, wait=wait, timeout=timeout)
        return

    async def work(client: StacklClient) -> None:
        if doc_type == "snapshot":
            result = await client.delete_snapshot(name)
            typer.echo(result.get("result") or f"deleted snapshot {name}")
            return
        await client.delete_document(doc_type, name, force=force)
        typer.echo(f"deleted {kinds.kind_of(doc_type)} {name}")

    context.run(ctx, work)
