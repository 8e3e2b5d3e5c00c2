"""Liveness, readiness and version: what load balancers, orchestrators and clients probe."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from stackl import __version__
from stackl.api.deps import PortsDep, SettingsDep
from stackl.usecases import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(ports: PortsDep) -> JSONResponse:
    """The process can do its work: the database answers, its schema is current and it accepts a write."""
    checks = await readiness.check(ports)
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/version")
async def get_version(ports: PortsDep, settings: SettingsDep) -> dict[str, Any]:
    """Server version, API version, 0.5 compatibility level, database kind and auth state."""
    return {
        "version": __version__,
        "api": "1",
        "compat": "0.5",
        "database": ports.store.kind,
        "auth_enabled": settings.auth_enabled,
    }
