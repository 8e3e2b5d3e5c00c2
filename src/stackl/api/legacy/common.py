"""Shared machinery of the STACKL 0.5 document groups (api.md §A.1): upserts, 0.5 view, 0.5 texts.

Five 0.5 routers (functional requirements, services, SATs, SITs, policy templates) differ only in path,
operationIds, type and messages, so one factory builds them; each operationId is the route's ``name``, exactly
as in 0.5, so the released ``stackl-cli`` keeps working.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from stackl import errors
from stackl.api import bodies
from stackl.api.deps import IfAbsentDep, IfMatchDep, PortsDep, SettingsDep, SubjectDep
from stackl.api.responses import respond
from stackl.domain.stored import ListQuery, StoredDocument
from stackl.schemas import legacy
from stackl.usecases import documents as document_cases
from stackl.usecases.ports import Ports

UPSERT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}


async def legacy_view(ports: Ports, stored: StoredDocument) -> dict[str, Any]:
    """The 0.5 view of a stored document (SITs with capabilities computed now)."""
    if stored.type == "stack_infrastructure_template":
        capabilities, _ = await document_cases.sit_capabilities(ports, stored.body)
        return legacy.to_legacy(stored.body, capabilities=capabilities)
    return legacy.to_legacy(stored.body)


async def upsert(
    request: Request,
    ports: Ports,
    *,
    settings: Any,
    subject: str,
    doc_type: str | None,
    if_revision: int | None,
    if_absent: bool,
    allowed_types: tuple[str, ...] = (),
) -> Response:
    """POST/PUT on a 0.5 path: create or replace, keeping omitted extension fields; 200 with the 0.5 view."""
    doc = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    bodies.check_document_size(doc, limit=settings.server.max_document_bytes)
    if allowed_types:
        given = doc.get("type") if isinstance(doc, dict) else None
        if given not in allowed_types:
            raise errors.InvalidDocument(
                errors=[
                    {
                        "loc": ["body", "type"],
                        "msg": "type has to be environment, location or zone" if given else "field required",
                        "type": "enum" if given else "missing",
                    }
                ]
            )
    written = await document_cases.write(
        ports,
        doc,
        subject=subject,
        doc_type=doc_type,
        legacy=True,
        if_revision=if_revision,
        if_absent=if_absent,
    )
    stored = written.result.document
    return respond(
        request, await legacy_view(ports, stored), revision=stored.revision, warnings=written.warnings
    )


async def list_view(
    request: Request, ports: Ports, doc_type: str, *, limit: int | None, cursor: str | None
) -> Response:
    """A bare array sorted by name; with ``limit``/``cursor`` one page and a ``Link: rel="next"`` header."""
    if limit is None and cursor is None:
        items = await document_cases.list_all(ports, doc_type)
        return respond(request, [await legacy_view(ports, d) for d in items])
    page = await document_cases.list_page(
        ports, ListQuery(types=(doc_type,), limit=limit or 100, cursor=cursor)
    )
    headers = {}
    if page.next_cursor:
        headers["Link"] = f'<{request.url.path}?limit={limit or 100}&cursor={page.next_cursor}>; rel="next"'
    return respond(request, [await legacy_view(ports, d) for d in page.items], headers=headers)


async def get_one(ports: Ports, doc_type: str, name: str, not_found: str) -> StoredDocument:
    """One document, or 404 with the 0.5 ``detail`` text."""
    try:
        return await document_cases.get(ports, doc_type, name)
    except errors.DocumentNotFound as exc:
        raise errors.DocumentNotFound(doc_type, name, not_found) from exc


Limit = Annotated[int | None, Query(ge=1, le=1000, description="page size (pages only when given)")]
Cursor = Annotated[str | None, Query(description="opaque cursor of the next page")]


@dataclass(frozen=True)
class Group:
    """What distinguishes one 0.5 document group from another."""

    doc_type: str
    prefix: str
    tag: str
    list_op: str
    get_op: str
    post_op: str
    put_op: str
    delete_op: str
    not_found: str
    deleted: Callable[[str], str]
    get_param: str = "name"


def document_router(group: Group) -> APIRouter:
    """A router with the five 0.5 operations of one document group."""
    router = APIRouter(prefix=group.prefix, tags=[group.tag])
    doc_type = group.doc_type

    async def list_docs(
        request: Request, ports: PortsDep, limit: Limit = None, cursor: Cursor = None
    ) -> Response:
        return await list_view(request, ports, doc_type, limit=limit, cursor=cursor)

    async def get_doc(request: Request, ports: PortsDep, name: str) -> Response:
        stored = await get_one(ports, doc_type, name, group.not_found)
        return respond(request, await legacy_view(ports, stored), revision=stored.revision)

    async def get_doc_by_policy_name(request: Request, ports: PortsDep, policy_name: str) -> Response:
        return await get_doc(request, ports, policy_name)

    async def write_doc(
        request: Request,
        ports: PortsDep,
        settings: SettingsDep,
        subject: SubjectDep,
        if_revision: IfMatchDep,
        if_absent: IfAbsentDep,
    ) -> Response:
        return await upsert(
            request,
            ports,
            settings=settings,
            subject=subject,
            doc_type=doc_type,
            if_revision=if_revision,
            if_absent=if_absent,
        )

    async def delete_doc(
        ports: PortsDep, subject: SubjectDep, if_revision: IfMatchDep, name: str, force: bool = False
    ) -> Response:
        warnings = await document_cases.delete(
            ports, doc_type, name, subject=subject, force=force, if_revision=if_revision
        )
        response = respond_result(group.deleted(name))
        for warning in warnings:
            response.headers.append("Stackl-Warning", warning)
        return response

    summary = doc_type.replace("_", " ")
    router.add_api_route("", list_docs, methods=["GET"], name=group.list_op, summary=f"List {summary}s")
    getter = get_doc_by_policy_name if group.get_param == "policy_name" else get_doc
    router.add_api_route(
        f"/{{{group.get_param}}}", getter, methods=["GET"], name=group.get_op, summary=f"Get a {summary}"
    )
    for method, op in (("POST", group.post_op), ("PUT", group.put_op)):
        router.add_api_route(
            "",
            write_doc,
            methods=[method],
            name=op,
            summary=f"Create or replace a {summary}",
            openapi_extra=UPSERT_BODY,
        )
    router.add_api_route(
        "/{name}", delete_doc, methods=["DELETE"], name=group.delete_op, summary=f"Delete a {summary}"
    )
    return router


def respond_result(text: str, *, headers: dict[str, str] | None = None) -> Response:
    """The 0.5 ``{"result": "..."}`` body of deletes and restores."""
    return JSONResponse({"result": text}, headers=headers)
