"""``stackl apply -d DIR``: every document of a directory in one bulk apply (spec/cli.md §4.1).

STACKL 0.5 uploaded file by file and stopped half way at the first error; here all documents are checked
locally (name, type), then sent in **one** ``POST /documents``, which applies all of them or none, in any
order. Server errors are reported against the file each document came from. ``--dry-run`` validates and
reports without writing; ``--diff`` shows each change as a YAML diff. The same change rendering serves
``stackl diff -d``.

``apply -c MANIFEST INSTANCE`` creates the stack instance when it does not exist and otherwise updates it
with the same values (``cli/instances.py``).
"""

import difflib
from pathlib import Path
from typing import Annotated, Any

import jsonpatch
import typer

from stackl import errors
from stackl.cli import context, exits, files, instances, kinds, output, progress
from stackl.client.client import JsonDict, StacklClient

READ_ONLY_FIELDS = ("metadata", "infrastructure_capabilities")


def apply(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="[INSTANCE]", help="Stack instance name (with -c).")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "-d",
            "--directory",
            exists=True,
            help="Directory (searched recursively for *.yml, *.yaml, *.json) or single file of documents.",
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option("-c", "--config-file", exists=True, help="Instance manifest (YAML): apply INSTANCE."),
    ] = None,
    params: Annotated[
        list[str] | None, typer.Option("-p", "--params", help="With -c: JSON object, repeatable.")
    ] = None,
    tags: instances.Tags = None,
    replicas: instances.Replicas = None,
    secrets: instances.Secrets = None,
    service_params: instances.ServiceParams = None,
    service_secrets: instances.ServiceSecrets = None,
    services: Annotated[
        str | None, typer.Option("--services", help="With -c: JSON list of extra services {name, service}.")
    ] = None,
    rollback: instances.Rollback = False,
    force_rerun: instances.ForceRerun = False,
    show_progress: instances.ShowProgress = False,
    wait: progress.Wait = False,
    timeout: progress.Timeout = None,
    fail_fast: progress.FailFast = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and report; write nothing.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show each change as a YAML diff.")] = False,
) -> None:
    """Create or update every document of DIR in one bulk apply, or (-c) create or update INSTANCE."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        if (directory is None) == (manifest is None):
            raise exits.UsageFailure("give either -d DIR or -c MANIFEST INSTANCE")
        if manifest is not None and not name:
            raise exits.UsageFailure("apply -c MANIFEST needs the INSTANCE name")
    if manifest is not None:
        assert name is not None  # noqa: S101 - checked above
        overrides: dict[str, Any] = {
            "params": params,
            "tags": tags,
            "replicas": replicas,
            "secrets": secrets,
            "service_params": service_params,
            "service_secrets": service_secrets,
            "services": services,
            "rollback": rollback,
            "force_rerun": force_rerun,
        }
        watch = progress.Watch(
            show=show_progress, wait=wait, timeout_s=timeout, fail_fast=fail_fast, quiet=opts.quiet
        )
        instances.apply_instance(ctx, name, manifest, overrides, watch)
        return
    assert directory is not None  # noqa: S101 - checked above
    with exits.reporting(quiet=opts.quiet):
        docs, sources = files.load(directory)

    async def work(client: StacklClient) -> None:
        results = await bulk_apply(client, docs, sources, dry_run=dry_run, diff=diff)
        for result in results:
            typer.echo(
                f"{result.get('action', '?')} {result.get('type', '?')} {result.get('name', '?')} "
                f"(revision {result.get('revision', '?')})"
            )
        if diff:
            await show_changes(client, results, applied=not dry_run, no_color=opts.no_color)
        report_warnings(client, results, sources, quiet=opts.quiet)
        if dry_run:
            output.info("Dry run: nothing was written.", quiet=opts.quiet)

    context.run(ctx, work)


async def bulk_apply(
    client: StacklClient, docs: list[JsonDict], sources: list[files.Source], *, dry_run: bool, diff: bool
) -> list[JsonDict]:
    """The bulk apply's results; a server error has its ``loc`` indexes turned into file names."""
    try:
        response = await client.apply_documents(docs, dry_run=dry_run, diff=diff)
    except errors.StacklError as exc:
        raise files.relabel(exc, sources) from None
    return [dict(r) for r in response.get("results", [])]


def report_warnings(
    client: StacklClient, results: list[JsonDict], sources: list[files.Source], *, quiet: bool
) -> None:
    """Each document's warnings (dangling references…), named by file; header copies are not repeated."""
    for result in results:
        index = result.get("index")
        where = sources[index].label() if isinstance(index, int) and 0 <= index < len(sources) else "?"
        for warning in result.get("warnings") or []:
            if warning in client.warnings:
                client.warnings.remove(warning)
            output.info(
                f"warning: {result.get('type')} {result.get('name')} ({where}): {warning}", quiet=quiet
            )


async def show_changes(
    client: StacklClient, results: list[JsonDict], *, applied: bool, no_color: bool
) -> int:
    """Print a YAML diff for every result that changes something; return how many do.

    Args:
        client: the open client.
        results: bulk-apply results with their ``patch``.
        applied: the results were written (the stored document before them is the previous revision).
        no_color: no colour even on a terminal.
    """
    changed = 0
    for result in results:
        if result.get("action") == "unchanged" or not result.get("patch"):
            continue
        changed += 1
        output.print_diff(await change_diff(client, result, applied=applied), no_color=no_color)
    return changed


async def change_diff(client: StacklClient, result: JsonDict, *, applied: bool) -> str:
    """The unified YAML diff of one bulk-apply result: the document before, then with the patch applied.

    The API returns an RFC 6902 patch (secrets masked) from the document as it was, so that document is read
    (masked the same way): the current one for a dry run, the previous revision once applied. When the patch
    does not apply to it, the patch itself is shown.
    """
    doc_type, name, patch = str(result.get("type")), str(result.get("name")), result.get("patch") or []
    label = f"{kinds.kind_of(doc_type)}/{name}"
    before: Any = {}
    if result.get("action") != "created":
        revision = result.get("revision")
        previous = revision - 1 if applied and isinstance(revision, int) and revision > 1 else None
        try:
            before = await client.get_document(doc_type, name, revision=previous)
        except errors.NotFound:
            before = {}
        for field in READ_ONLY_FIELDS:  # computed on read, so never part of a change
            if not any(str(op.get("path", "")).startswith(f"/{field}") for op in patch):
                before.pop(field, None)
    try:
        after = jsonpatch.apply_patch(before, patch)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError):
        return f"# {label}: changes (RFC 6902)\n{output.dump_yaml(patch)}"
    old = output.dump_yaml(before).splitlines(keepends=True) if before else []
    new = output.dump_yaml(after).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, f"{label} (stored)", f"{label} (new)"))
