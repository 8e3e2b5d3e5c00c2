"""The generic documents API (api.md §B.1): every type, full view with metadata, revisions, diff, restore.

Bodies are read by ``api.bodies`` (JSON or YAML) rather than declared as pydantic parameters, because one
endpoint takes ten document types and the validation errors must name the document's own fields.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from stackl import errors
from stackl.api import bodies
from stackl.api.deps import IfMatchDep, PortsDep, SettingsDep, SubjectDep
from stackl.api.responses import not_modified, respond
from stackl.domain import revisions
from stackl.domain.stored import ListQuery, StoredDocument
from stackl.schemas import documents as views
from stackl.usecases import documents as document_cases
from stackl.usecases import task_queries, updates
from stackl.usecases.ports import Ports

router = APIRouter(prefix="/documents", tags=["documents"])

OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}
BULK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/yaml": {"schema": {"type": "string", "description": "multi-document YAML"}},
        },
    }
}
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(description="opaque cursor from next_cursor")]


async def render(ports: Ports, stored: StoredDocument) -> dict[str, Any]:
    """The full view; SITs get their capabilities computed from the current infrastructure documents."""
    if stored.type == "stack_infrastructure_template":
        capabilities, _ = await document_cases.sit_capabilities(ports, stored.body)
        return views.full_view(stored, capabilities=capabilities)
    view = views.full_view(stored)
    if stored.type == "stack_instance":
        task = await task_queries.instance_task(ports, stored.name)
        view["state"] = task_queries.instance_state(stored.body, task)
        view["task"] = task
    return view


async def _read_one(request: Request, settings: SettingsDep) -> Any:
    doc = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    bodies.check_document_size(doc, limit=settings.server.max_document_bytes)
    return doc


@router.get("")
async def list_documents(
    request: Request,
    ports: PortsDep,
    type: Annotated[list[str] | None, Query(description="document types (repeatable)")] = None,
    name: Annotated[str | None, Query(description="substring of the name")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Summaries of the current documents, sorted by type and name."""
    page = await document_cases.list_page(
        ports, ListQuery(types=tuple(type or ()), name_contains=name, limit=limit, cursor=cursor)
    )
    return respond(
        request, {"items": [views.summary(d) for d in page.items], "next_cursor": page.next_cursor}
    )


@router.post("", openapi_extra=BULK_BODY)
async def apply_documents(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    dry_run: bool = False,
    diff: bool = False,
) -> Response:
    """Create or update many documents in one transaction, in any order: all of them or none."""
    docs = await bodies.read_document(request, limit=settings.server.max_body_bytes, many=True)
    if not isinstance(docs, list):
        raise errors.Malformed(
            "bulk apply takes a JSON array or multi-document YAML",
            errors=[{"loc": ["body"], "msg": "must be a list of documents", "type": "malformed"}],
        )
    for doc in docs:
        bodies.check_document_size(doc, limit=settings.server.max_document_bytes)
    items = await document_cases.apply_many(ports, docs, subject=subject, dry_run=dry_run, with_patch=diff)
    results = []
    for item in items:
        entry: dict[str, Any] = {
            "index": item.index,
            "type": item.type,
            "name": item.name,
            "action": item.action,
            "revision": item.revision,
            "warnings": item.warnings,
        }
        if diff or dry_run:
            entry["patch"] = item.patch
        results.append(entry)
    return respond(request, {"dry_run": dry_run, "results": results})


@router.get("/{type}")
async def list_documents_of_type(
    request: Request,
    ports: PortsDep,
    type: str,
    name: Annotated[str | None, Query(description="substring of the name")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Full documents of one type, sorted by name."""
    page = await document_cases.list_page(
        ports, ListQuery(types=(type,), name_contains=name, limit=limit, cursor=cursor)
    )
    items = [await render(ports, d) for d in page.items]
    return respond(request, {"items": items, "next_cursor": page.next_cursor})


@router.post("/{type}", status_code=201, openapi_extra=OBJECT_BODY)
async def create_document(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    type: str,
) -> Response:
    """Create a document; 409 when it exists."""
    document_cases.check_writable(type)
    doc = await _read_one(request, settings)
    written = await document_cases.write(ports, doc, subject=subject, doc_type=type, create_only=True)
    stored = written.result.document
    return respond(
        request,
        await render(ports, stored),
        status=201,
        revision=stored.revision,
        warnings=written.warnings,
        headers={"Location": f"/documents/{stored.type}/{stored.name}"},
    )


@router.get("/{type}/{name}")
async def get_document(
    request: Request,
    ports: PortsDep,
    type: str,
    name: str,
    revision: Annotated[
        int | None, Query(ge=1, le=revisions.MAX_REVISION, description="an earlier revision")
    ] = None,
) -> Response:
    """A document (or one of its revisions) in the full view; 304 when ``If-None-Match`` is current."""
    stored = await document_cases.get(ports, type, name, revision=revision)
    # Step progress changes a stack instance without a revision: while some is live, never answer 304 on the
    # revision alone; ``Stackl-Progress`` tells the state apart (the ETag stays the write precondition).
    unchanged = None if stored.progress_seq else not_modified(request, stored.revision)
    if unchanged is not None:
        return unchanged
    progress = {"Stackl-Progress": str(stored.progress_seq)} if stored.progress_seq else None
    return respond(request, await render(ports, stored), revision=stored.revision, headers=progress)


@router.put("/{type}/{name}", openapi_extra=OBJECT_BODY)
async def replace_document(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    type: str,
    name: str,
) -> Response:
    """Replace a document as a whole; 404 when it does not exist (no create)."""
    document_cases.check_writable(type)
    doc = await _read_one(request, settings)
    written = await document_cases.write(
        ports, doc, subject=subject, doc_type=type, must_exist=True, if_revision=if_revision, path_name=name
    )
    stored = written.result.document
    return respond(request, await render(ports, stored), revision=stored.revision, warnings=written.warnings)


@router.patch(
    "/{type}/{name}",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/merge-patch+json": {"schema": {"type": "object"}}},
        }
    },
)
async def patch_document(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    type: str,
    name: str,
) -> Response:
    """Apply a JSON merge patch (RFC 7396); the result is validated as a whole."""
    document_cases.check_writable(type)
    if bodies.media_type(request) not in bodies.JSON_TYPES:
        raise errors.UnsupportedMediaType("PATCH takes application/merge-patch+json")
    merge = await _read_one(request, settings)
    written = await document_cases.patch(ports, type, name, merge, subject=subject, if_revision=if_revision)
    stored = written.result.document
    return respond(request, await render(ports, stored), revision=stored.revision, warnings=written.warnings)


@router.delete("/{type}/{name}", status_code=204)
async def delete_document(
    request: Request,
    ports: PortsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    type: str,
    name: str,
    force: bool = False,
) -> Response:
    """Delete a document; 409 naming the referrers unless ``force``."""
    warnings = await document_cases.delete(
        ports, type, name, subject=subject, force=force, if_revision=if_revision
    )
    response = Response(status_code=204)
    for warning in warnings:
        response.headers.append("Stackl-Warning", warning)
    return response


@router.get("/{type}/{name}/revisions")
async def list_revisions(
    request: Request,
    ports: PortsDep,
    type: str,
    name: str,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """The document's history, newest first (deletes included)."""
    page = await document_cases.history(ports, type, name, limit=limit, cursor=cursor)
    return respond(
        request, {"items": [views.revision_entry(e) for e in page.items], "next_cursor": page.next_cursor}
    )


def _revision_ref(value: str, field: str) -> int | str:
    if value == "latest":
        return value
    if revisions.is_revision_number(value):
        return int(value)
    raise errors.Malformed(
        f"{field} must be a revision number or 'latest'",
        errors=[
            {"loc": ["path", field], "msg": "must be a revision number or 'latest'", "type": "malformed"}
        ],
    )


@router.get("/{type}/{name}/revisions/{a}/diff/{b}")
async def diff_revisions(
    request: Request,
    ports: PortsDep,
    type: str,
    name: str,
    a: str,
    b: str,
) -> Response:
    """The RFC 6902 patch and unified YAML diff from revision ``a`` to ``b`` (numbers or ``latest``)."""
    result = await document_cases.diff(ports, type, name, _revision_ref(a, "a"), _revision_ref(b, "b"))
    if "text/x-diff" in request.headers.get("accept", ""):
        return PlainTextResponse(result["text"], media_type="text/x-diff")
    return respond(request, result)


@router.post(
    "/{type}/{name}/restore",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["revision"],
                        "properties": {"revision": {"type": "integer", "minimum": 1}},
                    }
                }
            },
        }
    },
)
async def restore_document(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    type: str,
    name: str,
) -> Response:
    """Write an earlier revision again as a new revision (``action: restore``)."""
    body = await _read_one(request, settings)
    revision = body.get("revision") if isinstance(body, dict) else None
    if (
        not isinstance(revision, int)
        or isinstance(revision, bool)
        or not 1 <= revision <= revisions.MAX_REVISION
    ):
        raise errors.InvalidDocument(
            errors=[{"loc": ["body", "revision"], "msg": "must be a revision number", "type": "int"}]
        )
    if type == "stack_instance":  # a restore that converges the infrastructure: a task (lifecycle.md §4.8)
        started = await updates.restore_revision(
            ports, name, revision, subject=subject, source={"subject": subject, "via": "restore"}
        )
        headers = {"Location": f"/tasks/{started.task_id}", "Stackl-Task-Id": str(started.task_id)}
        restored = await document_cases.get(ports, type, name)
        return respond(request, await render(ports, restored), revision=restored.revision, headers=headers)
    written = await document_cases.restore(
        ports, type, name, revision, subject=subject, if_revision=if_revision
    )
    stored = written.result.document
    return respond(request, await render(ports, stored), revision=stored.revision, warnings=written.warnings)
