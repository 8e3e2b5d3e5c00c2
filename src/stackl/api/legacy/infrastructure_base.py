"""STACKL 0.5 ``/infrastructure_base`` (api.md §A.2): environments, locations and zones on one path."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from stackl import errors
from stackl.api.deps import IfAbsentDep, IfMatchDep, PortsDep, SettingsDep, SubjectDep
from stackl.api.legacy.common import (
    UPSERT_BODY,
    Cursor,
    Limit,
    get_one,
    legacy_view,
    list_view,
    respond_result,
    upsert,
)
from stackl.api.responses import respond
from stackl.domain.documents import INFRASTRUCTURE_BASE_TYPES
from stackl.usecases import documents as document_cases

router = APIRouter(prefix="/infrastructure_base", tags=["infrastructure_base"])


def _check_type(infrastructure_base_type: str) -> str:
    if infrastructure_base_type not in INFRASTRUCTURE_BASE_TYPES:
        raise errors.Malformed(
            "type has to be environment, location or zone",
            errors=[
                {
                    "loc": ["path", "infrastructure_base_type"],
                    "msg": "type has to be environment, location or zone",
                    "type": "enum",
                }
            ],
        )
    return infrastructure_base_type


@router.get("/{infrastructure_base_type}")
async def get_infrastructure_base_by_type(
    request: Request,
    ports: PortsDep,
    infrastructure_base_type: str,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Response:
    """Every environment, location or zone, sorted by name."""
    return await list_view(request, ports, _check_type(infrastructure_base_type), limit=limit, cursor=cursor)


@router.get("/{infrastructure_base_type}/{infrastructure_base_name}")
async def get_infrastructure_base_by_type_and_name(
    request: Request, ports: PortsDep, infrastructure_base_type: str, infrastructure_base_name: str
) -> Response:
    """One environment, location or zone."""
    stored = await get_one(
        ports, _check_type(infrastructure_base_type), infrastructure_base_name, "Document not found"
    )
    return respond(request, await legacy_view(ports, stored), revision=stored.revision)


async def _write(
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
        doc_type=None,
        if_revision=if_revision,
        if_absent=if_absent,
        allowed_types=INFRASTRUCTURE_BASE_TYPES,
    )


@router.post("", openapi_extra=UPSERT_BODY)
async def post_infrastructure_base(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    if_absent: IfAbsentDep,
) -> Response:
    """Create or replace an environment, location or zone (``type`` required)."""
    return await _write(request, ports, settings, subject, if_revision, if_absent)


@router.put("", openapi_extra=UPSERT_BODY)
async def put_infrastructure_base(
    request: Request,
    ports: PortsDep,
    settings: SettingsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    if_absent: IfAbsentDep,
) -> Response:
    """Create or replace an environment, location or zone (``type`` required)."""
    return await _write(request, ports, settings, subject, if_revision, if_absent)


@router.delete("/{infrastructure_base_type}/{infrastructure_base_name}")
async def delete_infrastructure_base(
    ports: PortsDep,
    subject: SubjectDep,
    if_revision: IfMatchDep,
    infrastructure_base_type: str,
    infrastructure_base_name: str,
    force: bool = False,
) -> Response:
    """Delete an environment, location or zone; 409 while a SIT refers to it, unless ``force``."""
    doc_type = _check_type(infrastructure_base_type)
    try:
        warnings = await document_cases.delete(
            ports, doc_type, infrastructure_base_name, subject=subject, force=force, if_revision=if_revision
        )
    except errors.DocumentNotFound as exc:
        raise errors.DocumentNotFound(doc_type, infrastructure_base_name, "Document not found") from exc
    response = respond_result(f"deleted {doc_type} {infrastructure_base_name}")
    for warning in warnings:
        response.headers.append("Stackl-Warning", warning)
    return response
