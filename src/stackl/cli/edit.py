"""``stackl edit KIND NAME``: change a document in an editor, safe from concurrent writes (cli.md §4.4).

The document is opened as YAML (full view without ``metadata``) in ``$VISUAL``, else ``$EDITOR``, else
``vi``: a ``/bin/sh`` expands those variables (so an editor with arguments, ``code --wait``, works, and the
CLI reads no environment itself), and the CLI waits for it to exit. Saving it unchanged changes nothing.
Otherwise it is written with ``If-Match`` set to the revision that was opened, so a change made meanwhile by
someone else is never overwritten: that ends with exit 5 and a hint to look at ``stackl diff``. An invalid
document (bad YAML, or refused by the server) reopens in the editor with the errors as ``#`` comments at the
top, keeping the edits; saving an empty file, or saving it again unfixed, abandons the edit (exit 3).
STACKL 0.5 sent SITs and SATs to the wrong endpoint; here every kind goes to ``/documents/{type}/{name}``.
"""

import asyncio
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from stackl import errors
from stackl.cli import context, exits, files, kinds, output
from stackl.client.client import JsonDict, StacklClient

EDITOR_SHELL = "/bin/sh"
EDITOR_COMMAND = '${VISUAL:-${EDITOR:-vi}} "$1"'  # $1: the file; the variables are left unquoted on purpose
ERROR_MARKER = "# The document was not saved:"
NO_CHANGES = "No changes, document not modified"


def edit(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(
            metavar="KIND",
            help="environment, location, zone, sit, sat, service, functional-requirement or policy-template.",
            autocompletion=kinds.complete,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the document.", show_default=False)],
) -> None:
    """Edit a document in $VISUAL or $EDITOR and replace it if it was changed."""
    opts = context.options(ctx)
    doc_type = kinds.resolve(kind, allowed=kinds.CONFIGURATION_TYPES, command="edit")
    label = f"{kinds.kind_of(doc_type)} {name}"

    async def work(client: StacklClient) -> None:
        stored = await client.get_document(doc_type, name)
        revision = stored.get("metadata", {}).get("revision")
        body = {k: v for k, v in stored.items() if k != "metadata"}
        text = output.dump_yaml(body)
        rejected: tuple[str, list[str]] | None = None  # the last refused content and why
        while True:
            content = strip_errors(await run_editor(text, prefix=f"{doc_type}-{name}-"))
            if rejected is not None and content == rejected[0]:
                raise errors.InvalidInput(
                    f"Edit of {label} cancelled: the document was saved again without fixing it",
                    errors=[{"loc": [], "msg": line.strip(), "type": "edit"} for line in rejected[1]],
                )
            try:
                new = parse_edited(content)
            except exits.UsageFailure as exc:
                rejected = (content, [exc.message])
                text = with_errors(content, rejected[1])
                continue
            if new is None:
                raise errors.InvalidInput(f"Edit of {label} cancelled: the file was saved empty")
            if new == body:
                output.info(NO_CHANGES, quiet=opts.quiet)
                return
            try:
                saved = await client.replace_document(doc_type, name, new, if_match=revision)
            except (errors.InvalidInput, errors.Malformed) as exc:
                rejected = (content, list(exits.describe(exc)))
                text = with_errors(content, rejected[1])
                continue
            except errors.PreconditionFailed as exc:
                exits.fail(
                    exc,
                    quiet=opts.quiet,
                    hint=f"{label} changed since revision {revision}: see what changed with "
                    f"`stackl diff {kinds.kind_of(doc_type)} {name} {revision}`, then edit again",
                )
            new_revision = saved.get("metadata", {}).get("revision")
            if new_revision == revision:
                output.info(NO_CHANGES, quiet=opts.quiet)
            else:
                typer.echo(f"edited {label} (revision {new_revision})")
            return

    context.run(ctx, work)


async def run_editor(text: str, *, prefix: str) -> str:
    """The text after the user edited it in their editor, through a private temporary file.

    Raises:
        exits.UsageFailure: the editor could not be started or exited with an error.
    """
    path = Path(await asyncio.to_thread(_write_temporary, text, prefix))
    try:
        process = await asyncio.create_subprocess_exec(
            EDITOR_SHELL, "-c", EDITOR_COMMAND, "stackl-edit", str(path)
        )
        status = await process.wait()
        if status != 0:
            raise exits.UsageFailure(f"the editor exited with status {status}; nothing was changed")
        return await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        raise exits.UsageFailure(f"cannot run the editor: {exc}") from exc
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


def _write_temporary(text: str, prefix: str) -> str:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".yaml")  # mode 0600: only the user reads it
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return name


def parse_edited(content: str) -> JsonDict | None:
    """The edited document, or None when the file holds none (saved empty).

    Raises:
        exits.UsageFailure: not YAML, several documents, or not a mapping.
    """
    docs: list[Any] = files.parse(content, origin="the edited document")
    if not docs:
        return None
    if len(docs) > 1 or not isinstance(docs[0], dict):
        raise exits.UsageFailure("expected exactly one document (a YAML mapping)")
    doc: JsonDict = docs[0]
    doc.pop("metadata", None)  # read-only: ignored on writes, so not a change either
    return doc


def with_errors(content: str, lines: Iterable[str]) -> str:
    """The edited text with errors as ``#`` comments at the top, for the next round in the editor."""
    header = [ERROR_MARKER]
    header += [f"#   {part}" for line in lines for part in str(line).splitlines()]
    header += ["# Fix the document below and save it again; save an empty file to cancel the edit.", ""]
    return "\n".join(header) + content


def strip_errors(text: str) -> str:
    """The text without the error comments ``with_errors`` put at its top."""
    if not text.startswith(ERROR_MARKER):
        return text
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines) and (lines[index].startswith("#") or not lines[index].strip()):
        index += 1
    return "".join(lines[index:])
