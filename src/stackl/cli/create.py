"""``stackl create snapshot`` and ``stackl create policy`` (spec/cli.md §4).

Snapshots keep the STACKL 0.5 syntax (``create snapshot TYPE NAME``, TYPE a document type or a CLI kind) and
print the snapshot's name, not 0.5's bare ``201``; ``--revision`` copies an older revision. ``create policy``
was broken in 0.5: here it creates or replaces the policy template NAME from a Rego file through the 0.5
``PUT /policy_templates`` upsert, and a Rego compile error comes back as a 422 whose entries carry line and
column (exit 3). ``create instance`` joins this group with the instance commands.
"""

from pathlib import Path
from typing import Annotated

import typer

from stackl.cli import context, exits, files, kinds
from stackl.client.client import JsonDict, StacklClient

SNAPSHOT_SOURCE_TYPES = (*kinds.CONFIGURATION_TYPES, "stack_instance")


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def snapshot(
    ctx: typer.Context,
    doc_type_word: Annotated[
        str, typer.Argument(metavar="TYPE", help="Document type or kind of the document.", show_default=False)
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the document.", show_default=False)],
    snapshot_name: Annotated[
        str | None, typer.Option("--name", help="Snapshot name (default: <type>_<name>_<UTC time>).")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Why this snapshot exists.")
    ] = None,
    revision: Annotated[
        int | None, typer.Option("--revision", min=1, help="Copy this revision (default: the latest).")
    ] = None,
) -> None:
    """Copy a document into a named, immutable snapshot and print its name."""
    doc_type = kinds.resolve(doc_type_word, allowed=SNAPSHOT_SOURCE_TYPES, command="create snapshot")

    async def work(client: StacklClient) -> None:
        created = await client.create_snapshot(
            doc_type, name, name_=snapshot_name, description=description, revision=revision
        )
        typer.echo(created.get("name", ""))

    context.run(ctx, work)


def policy(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="Policy template name (the Rego package).", show_default=False),
    ],
    policy_file: Annotated[
        Path,
        typer.Option("-p", "--policy-file", exists=True, dir_okay=False, help="Rego source of the policy."),
    ],
    inputs: Annotated[str | None, typer.Option("-i", "--inputs", help="Expected input keys: a,b.")] = None,
    outputs: Annotated[
        str | None, typer.Option("--outputs", help="Fields of SAT policy results recorded per replica: a,b.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="What the policy checks.")] = None,
) -> None:
    """Create or replace policy template NAME with the Rego of FILE."""
    with exits.reporting(quiet=context.options(ctx).quiet):
        policy_text = files.read_text(policy_file)
    body: JsonDict = {
        "name": name,
        "type": "policy_template",
        "category": "configs",
        "description": description or "",
        "policy": policy_text,
        "inputs": split_list(inputs),
        "outputs": split_list(outputs),
    }

    async def work(client: StacklClient) -> None:
        await client.put_policy_template(body)
        revision = client.last.revision if client.last is not None else None
        typer.echo(f"saved policy-template {name}" + (f" (revision {revision})" if revision else ""))

    context.run(ctx, work)
