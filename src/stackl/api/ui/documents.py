"""The documents browser: list by type, view YAML (secrets masked), revision history, diff, restore."""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from stackl import errors
from stackl.api.deps import PortsDep, SubjectDep
from stackl.api.ui.common import UIRoute, read_form, render, same_origin
from stackl.domain import documents, revisions
from stackl.domain.stored import ListQuery
from stackl.usecases import documents as document_cases

router = APIRouter(prefix="/documents", route_class=UIRoute)

PAGE_SIZE = 100
HISTORY_SIZE = 50
TYPES = list(documents.DOCUMENT_TYPES)
Type = Annotated[str, Path(max_length=100)]
Name = Annotated[str, Path(max_length=200)]


def _url(doc_type: str, name: str, suffix: str = "") -> str:
    return f"/ui/documents/{quote(doc_type, safe='')}/{quote(name, safe='')}{suffix}"


@router.get("", name="ui_documents")
async def list_documents(
    request: Request,
    ports: PortsDep,
    type: Annotated[str | None, Query(max_length=100)] = None,
    name: Annotated[str | None, Query(max_length=200, description="substring of the name")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """The documents of one type (the first type by default), sorted by name, a page at a time."""
    doc_type = type or TYPES[0]
    document_cases.check_type(doc_type)
    page = await document_cases.list_page(
        ports, ListQuery(types=(doc_type,), name_contains=name or None, limit=PAGE_SIZE, cursor=cursor)
    )
    return render(
        request,
        "documents.html",
        types=TYPES,
        doc_type=doc_type,
        name_filter=name or "",
        items=page.items,
        next_cursor=page.next_cursor,
    )


@router.get("/{doc_type}/{name}", name="ui_document")
async def document_page(
    request: Request,
    ports: PortsDep,
    doc_type: Type,
    name: Name,
    revision: Annotated[int | None, Query(ge=1, le=revisions.MAX_REVISION)] = None,
    restored: Annotated[int | None, Query(ge=1, le=revisions.MAX_REVISION)] = None,
) -> Response:
    """The current document (or one revision) as YAML, with its history."""
    document_cases.check_type(doc_type)
    history = await document_cases.history(ports, doc_type, name, limit=HISTORY_SIZE)
    current: Any = None
    try:
        current = await document_cases.get(ports, doc_type, name)
    except errors.DocumentNotFound:
        current = None  # deleted: its history (and a restore) remain
    shown = current
    if revision is not None and (current is None or revision != current.revision):
        shown = await document_cases.get(ports, doc_type, name, revision=revision)
    return render(
        request,
        "document.html",
        doc_type=doc_type,
        name=name,
        current=current,
        shown=shown,
        text=documents.mask_secrets(shown.body) if shown is not None else None,
        history=history.items,
        more_history=history.next_cursor is not None,
        restorable=doc_type not in document_cases.READ_ONLY_TYPES,
        restored=restored,
    )


@router.get("/{doc_type}/{name}/diff", name="ui_document_diff")
async def document_diff(
    request: Request,
    ports: PortsDep,
    doc_type: Type,
    name: Name,
    from_: Annotated[int, Query(alias="from", ge=1, le=revisions.MAX_REVISION)],
    to: Annotated[int | None, Query(ge=1, le=revisions.MAX_REVISION)] = None,
) -> Response:
    """The difference between two revisions (secrets masked), as a unified diff of the YAML."""
    diff = await document_cases.diff(ports, doc_type, name, from_, "latest" if to is None else to)
    lines = []
    for line in str(diff["text"]).splitlines():
        kind = "head" if line.startswith(("+++", "---", "@@")) else {"+": "add", "-": "del"}.get(line[:1], "")
        lines.append((kind, line))
    return render(
        request,
        "diff.html",
        doc_type=doc_type,
        name=name,
        diff=diff,
        lines=lines,
        restorable=doc_type not in document_cases.READ_ONLY_TYPES,
    )


@router.post("/{doc_type}/{name}/restore", name="ui_document_restore", dependencies=[Depends(same_origin)])
async def restore_document(
    request: Request, ports: PortsDep, subject: SubjectDep, doc_type: Type, name: Name
) -> Response:
    """Write an earlier revision again as a new revision, then show the document."""
    form = await read_form(request)
    raw = form.get("revision", "")
    if not revisions.is_revision_number(raw):
        raise errors.InvalidInput(
            "choose the revision to restore",
            errors=[{"loc": ["form", "revision"], "msg": "must be a revision number", "type": "value"}],
        )
    written = await document_cases.restore(ports, doc_type, name, int(raw), subject=subject)
    target = _url(doc_type, name, f"?restored={int(raw)}")
    revision = str(written.result.document.revision)
    return RedirectResponse(target, status_code=303, headers={"Stackl-Revision": revision})
