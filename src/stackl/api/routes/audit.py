"""The audit log (api.md §B.7, admin): who changed what, when, with which outcome; newest first."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from stackl.api.deps import PortsDep
from stackl.api.responses import respond
from stackl.usecases import audit as audit_cases

router = APIRouter(tags=["audit"])


@router.get("/audit", name="list_audit_events")
async def list_audit_events(
    request: Request,
    ports: PortsDep,
    subject: Annotated[str | None, Query(description="only this subject's requests")] = None,
    action: Annotated[
        str | None, Query(description="create, update, delete, restore, cancel, register…")
    ] = None,
    resource_type: Annotated[str | None, Query(description="document type, task, agent, token…")] = None,
    resource_name: Annotated[str | None, Query(description="resource name")] = None,
    result: Annotated[str | None, Query(description="success, denied or error")] = None,
    since: Annotated[datetime | None, Query(description="from this time (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (RFC 3339)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Audit entries matching every given filter, newest first."""
    page = await audit_cases.query(
        ports,
        subject=subject,
        action=action,
        resource_type=resource_type,
        resource_name=resource_name,
        result=result,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
        cursor=cursor,
    )
    return respond(
        request,
        {"items": [audit_cases.entry_view(e) for e in page.items], "next_cursor": page.next_cursor},
    )


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
