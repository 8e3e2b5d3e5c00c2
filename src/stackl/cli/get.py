"""``stackl get KIND [NAME]``: documents as a table, YAML, JSON or names (spec/cli.md §4, §4.3).

Every kind is read from ``/documents/{type}`` in the full view (with ``metadata``), so ``-o yaml|json`` output
can be applied back and tables can show revisions and times. Snapshots have two extra forms kept from STACKL
0.5: ``get snapshots TYPE NAME`` lists the snapshots of one document, newest first, and ``get snapshot NAME``
shows one. The snapshots of a document are picked from the full-view list by their exact ``source``: the 0.5
path ``/snapshots/{type}/{name}`` answers in the 0.5 view, which lacks the source revision, time and author
that the table and ``-o`` output show.
"""

from typing import Annotated, Any

import typer

from stackl.cli import context, kinds, output, tables
from stackl.client.client import StacklClient


def get(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(
            metavar="KIND",
            help="instance, environment, location, zone, sat, sit, service, functional-requirement, "
            "policy-template or snapshot (plurals and document type names too).",
            autocompletion=kinds.complete,
            show_default=False,
        ),
    ],
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help="NAME of one document; for snapshots also TYPE NAME of the snapshotted document.",
        ),
    ] = None,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """Show one document or list every document of a kind."""
    opts = context.options(ctx)
    doc_type = kinds.resolve(kind, command="get")
    names = names or []
    if len(names) > (2 if doc_type == "snapshot" else 1):
        raise typer.BadParameter(
            "expected NAME, or TYPE NAME for snapshots" if doc_type == "snapshot" else "expected one NAME"
        )
    source_type = None
    if len(names) == 2:  # get snapshots TYPE NAME
        source_type = kinds.resolve(names[0], allowed=(*kinds.CONFIGURATION_TYPES, "stack_instance"))

    async def work(client: StacklClient) -> None:
        objects: list[dict[str, Any]]
        if source_type is not None:
            objects = snapshots_of(await client.list_documents("snapshot"), source_type, names[1])
        elif names:
            objects = [await client.get_document(doc_type, names[0])]
        else:
            objects = await client.list_documents(doc_type)
        columns, rows = tables.TABLES[doc_type]
        output.print_objects(
            objects,
            fmt,
            columns=columns,
            rows=rows,
            single=len(names) == 1,
            no_color=opts.no_color,
            empty=f"No {kinds.kind_of(doc_type)} found.",
            quiet=opts.quiet,
        )

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


def snapshots_of(snapshots: list[dict[str, Any]], doc_type: str, name: str) -> list[dict[str, Any]]:
    """The snapshots whose source is exactly (``doc_type``, ``name``), newest first."""
    found = [
        s
        for s in snapshots
        if isinstance(s.get("source"), dict)
        and (s["source"].get("type"), s["source"].get("name")) == (doc_type, name)
    ]
    return sorted(
        found,
        key=lambda s: (str(s.get("metadata", {}).get("created_at", "")), s.get("name", "")),
        reverse=True,
    )
