"""``stackl history``, ``stackl diff`` and ``stackl restore``: a document's revisions (spec/cli.md §5.7, §4).

Every write is a revision on the server; these commands read the history, compare two revisions (the server
computes the RFC 6902 patch and the unified YAML diff), compare local files with what is stored (a bulk-apply
dry run with ``diff``, the same request ``apply -d --dry-run --diff`` makes), and write an old revision or a
snapshot back as a new revision. ``--exit-code`` makes ``diff`` usable in CI: exit 10 when something differs.
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from stackl.cli import apply, context, exits, files, kinds, output, tables
from stackl.client.client import JsonDict, StacklClient

KindArgument = Annotated[
    str,
    typer.Argument(
        metavar="KIND", help="Kind of the document (see `stackl get -h`).", autocompletion=kinds.complete
    ),
]
NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Name of the document.", show_default=False)
]
HISTORY_TYPES = tuple(t for t in kinds.ALL_TYPES if t != "snapshot")


class DiffFormat(StrEnum):
    """Values of ``diff -o``."""

    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


def history(
    ctx: typer.Context,
    kind: KindArgument,
    name: NameArgument,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show the newest N revisions.")] = None,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """List the revisions of a document, newest first."""
    opts = context.options(ctx)
    doc_type = kinds.resolve(kind, allowed=kinds.ALL_TYPES, command="history")
    if fmt is output.Format.NAME:
        raise typer.BadParameter("history prints table, yaml or json", param_hint="'-o'")

    async def work(client: StacklClient) -> None:
        entries = await client.list_revisions(doc_type, name, limit=limit)
        columns, rows = tables.HISTORY
        output.print_objects(
            entries,
            fmt,
            columns=columns,
            rows=rows,
            no_color=opts.no_color,
            empty="No revisions.",
            quiet=opts.quiet,
        )

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


def revision_ref(value: str | None) -> int | str | None:
    """A revision argument: a positive number or ``latest``."""
    if value is None or value == "latest":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise typer.BadParameter(f"{value!r} is not a revision: use a number or 'latest'")


def diff(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Argument(metavar="KIND", help="Kind of the document.", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Name of the document.", show_default=False)
    ] = None,
    a: Annotated[
        str | None, typer.Argument(metavar="A", help="From revision (default: the previous one).")
    ] = None,
    b: Annotated[str | None, typer.Argument(metavar="B", help="To revision (default: latest).")] = None,
    directory: Annotated[
        Path | None, typer.Option("-d", "--directory", exists=True, help="Compare the documents of DIR.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("-f", "--file", exists=True, dir_okay=False, help="Compare the documents of FILE."),
    ] = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 10 when there are differences.")
    ] = False,
    fmt: Annotated[
        DiffFormat, typer.Option("-o", "--output", help="text: unified YAML diff; json/yaml: RFC 6902 patch.")
    ] = DiffFormat.TEXT,
) -> None:
    """Show what changed between two revisions, or what `apply -d` would change."""
    opts = context.options(ctx)
    local = directory or file
    if (local is not None) == (kind is not None) or (directory is not None and file is not None):
        raise typer.BadParameter(
            "use `stackl diff KIND NAME [A [B]]`, `stackl diff -d DIR` or `stackl diff -f FILE`"
        )
    if local is not None:
        with exits.reporting(quiet=opts.quiet):
            docs, sources = files.load(local)
        differs = context.run(
            ctx,
            lambda client: _diff_files(client, docs, sources, fmt, opts),
            json_errors=fmt is DiffFormat.JSON,
        )
    else:
        if name is None or kind is None:
            raise typer.BadParameter("missing NAME", param_hint="NAME")
        doc_type = kinds.resolve(kind, allowed=HISTORY_TYPES, command="diff")
        refs = (revision_ref(a), revision_ref(b))
        differs = context.run(
            ctx,
            lambda client: _diff_revisions(client, doc_type, name, refs, fmt, opts),
            json_errors=fmt is DiffFormat.JSON,
        )
    if exit_code and differs:
        raise typer.Exit(exits.EXIT_DIFFERENCES)


async def _diff_revisions(
    client: StacklClient,
    doc_type: str,
    name: str,
    refs: tuple[int | str | None, int | str | None],
    fmt: DiffFormat,
    opts: context.Options,
) -> bool:
    a, b = refs
    if a is None:  # previous and latest
        newest = await client.list_revisions(doc_type, name, limit=2)
        if len(newest) < 2:
            output.info(
                f"{kinds.kind_of(doc_type)} {name} has a single revision: nothing to compare",
                quiet=opts.quiet,
            )
            _print_patch([], fmt, text="", no_color=opts.no_color)
            return False
        a, b = newest[1]["revision"], newest[0]["revision"]
    result = await client.diff_revisions(doc_type, name, a, b if b is not None else "latest")
    patch = list(result.get("patch") or [])
    _print_patch(patch, fmt, text=str(result.get("text") or ""), no_color=opts.no_color)
    if not patch and fmt is DiffFormat.TEXT:
        output.info("No differences.", quiet=opts.quiet)
    return bool(patch)


async def _diff_files(
    client: StacklClient,
    docs: list[JsonDict],
    sources: list[files.Source],
    fmt: DiffFormat,
    opts: context.Options,
) -> bool:
    results = await apply.bulk_apply(client, docs, sources, dry_run=True, diff=True)
    apply.report_warnings(client, results, sources, quiet=opts.quiet)
    changes = [r for r in results if r.get("action") != "unchanged"]
    if fmt is DiffFormat.TEXT:
        await apply.show_changes(client, changes, applied=False, no_color=opts.no_color)
        if not changes:
            output.info("No differences.", quiet=opts.quiet)
    else:
        summary = [{k: r.get(k) for k in ("type", "name", "action", "revision", "patch")} for r in changes]
        typer.echo(
            output.dump_json(summary) if fmt is DiffFormat.JSON else output.dump_yaml(summary), nl=False
        )
        if fmt is DiffFormat.JSON:
            typer.echo()
    return bool(changes)


def _print_patch(patch: list[JsonDict], fmt: DiffFormat, *, text: str, no_color: bool) -> None:
    if fmt is DiffFormat.JSON:
        typer.echo(output.dump_json(patch))
    elif fmt is DiffFormat.YAML:
        typer.echo(output.dump_yaml(patch), nl=False)
    elif text:
        output.print_diff(text, no_color=no_color)


def restore(
    ctx: typer.Context,
    target: Annotated[
        list[str],
        typer.Argument(
            metavar="SNAPSHOT | KIND NAME", help="A snapshot, or the KIND and NAME of a document."
        ),
    ],
    revision: Annotated[
        int | None, typer.Option("--revision", min=1, help="Revision to write again (with KIND NAME).")
    ] = None,
) -> None:
    """Restore a snapshot, or write revision N of a document again as its newest revision."""
    if len(target) == 1 and revision is None:

        async def from_snapshot(client: StacklClient) -> None:
            result = await client.restore_snapshot(target[0])
            typer.echo(result.get("result") or f"snapshot {target[0]} restored")
            if client.last is not None and client.last.task_id:
                typer.echo(f"task {client.last.task_id}")

        context.run(ctx, from_snapshot)
        return
    if len(target) != 2 or revision is None:
        raise typer.BadParameter("use `stackl restore SNAPSHOT` or `stackl restore KIND NAME --revision N`")
    doc_type = kinds.resolve(target[0], allowed=HISTORY_TYPES, command="restore")
    label = f"{kinds.kind_of(doc_type)} {target[1]}"

    async def from_revision(client: StacklClient) -> None:
        result = await client.restore_document(doc_type, target[1], revision)
        if client.last is not None and client.last.status == 202:  # a stack instance converges in a task
            typer.echo(
                f"restoring {label} to revision {revision}: task {result.get('id', client.last.task_id)}"
            )
        else:
            new = result.get("metadata", {}).get("revision")
            typer.echo(f"restored {label} revision {revision} as revision {new}")

    context.run(ctx, from_revision)
