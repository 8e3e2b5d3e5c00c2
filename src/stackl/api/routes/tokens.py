"""Auth routes (api.md §B.6): who am I, and the API tokens (admin).

A token's secret is in the answer of its creation only; lists show ids, subjects, roles and times.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from stackl.api.deps import CallerDep, PortsDep, SettingsDep
from stackl.api.responses import respond
from stackl.usecases import tokens as token_cases

router = APIRouter(prefix="/auth", tags=["auth"])

TOKEN_BODY = Body(
    examples=[{"subject": "alice", "role": "operator", "description": "CI pipeline", "expires_in_s": 2592000}]
)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


@router.get("/whoami", name="whoami", responses={401: {"description": "no or invalid token"}})
async def whoami(caller: CallerDep, settings: SettingsDep) -> dict[str, Any]:
    """The caller's subject, roles and token (``local``/admin when auth is off)."""
    return {
        "subject": caller.name,
        "roles": [r.value for r in caller.roles],
        "token_id": caller.token_id,
        "agent": caller.agent,
        "auth_enabled": settings.auth_enabled,
        "expires_at": _iso(caller.expires_at),
    }


@router.post("/tokens", name="create_token", status_code=201)
async def create_token(
    request: Request,
    ports: PortsDep,
    caller: CallerDep,
    body: Annotated[dict[str, Any], TOKEN_BODY],
) -> Response:
    """Create a token; its secret is in this answer only."""
    created = await token_cases.create(ports, body, created_by=caller.name)
    record = created.record
    return respond(
        request,
        {
            "id": record.id,
            "token": created.secret,
            "subject": record.subject,
            "role": record.role,
            "agent": record.agent,
            "description": record.description,
            "created_at": _iso(record.created_at),
            "expires_at": _iso(record.expires_at),
        },
        status=201,
        headers={"Location": f"/auth/tokens/{record.id}", "Cache-Control": "no-store"},
    )


@router.get("/tokens", name="list_tokens")
async def list_tokens(
    request: Request,
    ports: PortsDep,
    include_revoked: Annotated[bool, Query(description="also list revoked tokens")] = False,
) -> Response:
    """Every token, without secrets, with ``last_used_at``."""
    found = await token_cases.list_tokens(ports, include_revoked=include_revoked)
    now = ports.clock.now()
    return respond(
        request, {"items": [token_cases.token_view(t, now=now) for t in found], "next_cursor": None}
    )


@router.delete("/tokens/{token_id}", name="revoke_token", status_code=204)
async def revoke_token(ports: PortsDep, token_id: str) -> Response:
    """Revoke a token: it stops working at once."""
    await token_cases.revoke(ports, token_id)
    return Response(status_code=204)
