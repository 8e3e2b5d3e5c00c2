"""THE mapping from StacklError to HTTP status and RFC 9457 problem body, for the whole app.

Routes raise errors; this module alone turns them into responses. The mapping walks the exception's MRO, so
the most specific entry wins. ``detail`` is always a string (the 0.5 CLI prints it); ``errors`` lists
``{loc, msg, type}``; an error's structured attributes (referrers, explanation…) become extra members.
"""

import math
import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stackl import errors

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS: dict[type[errors.StacklError], int] = {
    errors.InvalidInput: 422,
    errors.Malformed: 400,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.MethodNotAllowed: 405,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}

TITLES = {
    "malformed": "Malformed request",
    "unauthorized": "Authentication required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "already_exists": "Document already exists",
    "referenced": "Document is referenced",
    "instance_busy": "Stack instance is busy",
    "conflict": "Conflict",
    "precondition_failed": "Precondition failed",
    "payload_too_large": "Payload too large",
    "request_timeout": "Request timeout",
    "unsupported_media_type": "Unsupported media type",
    "validation": "Validation failed",
    "missing_references": "Missing references",
    "placement_failed": "Placement failed",
    "policy_error": "Policy error",
    "idempotency_key_reused": "Idempotency key reused",
    "unavailable": "Service unavailable",
    "rate_limited": "Too many requests",
    "internal": "Internal server error",
}

_ROOTS = {"body", "references", "query", "path", "header"}


def status_of(exc: errors.StacklError) -> int:
    """The HTTP status of an error: the most specific class in the table wins; unknown errors are bugs."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _loc(loc: list[Any]) -> list[Any]:
    """Locations are paths from the request root: document-relative ones get the ``body`` prefix."""
    return loc if loc and loc[0] in _ROOTS else ["body", *loc]


def request_id(request: Request) -> str:
    """The request id the middleware assigned (or an empty string outside a request)."""
    return str(getattr(request.state, "request_id", ""))


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str,
    problem_errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": f"urn:stackl:problem:{code}",
        "code": code,
        "title": TITLES.get(code, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id(request),
        "errors": problem_errors or [],
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _stackl_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.StacklError)  # noqa: S101 - registered for StacklError only
    status = status_of(exc)
    if status == 500:
        return internal_error(request, exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = "5"
    if isinstance(exc, errors.RateLimited):  # whole seconds, never 0: the caller must wait for a token
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    problem_errors = [{**e, "loc": _loc(list(e.get("loc", [])))} for e in exc.errors]
    return problem(
        request,
        status=status,
        code=exc.code,
        detail=exc.message,
        problem_errors=problem_errors,
        extra=exc.extra(),
        headers=headers,
    )


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    items = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in items)
    on_body = any(e["loc"][:1] == ["body"] for e in items)
    status, code = (422, "validation") if on_body else (400, "malformed")
    return problem(request, status=status, code=code, detail=detail, problem_errors=items)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this class only
    codes = {
        404: "not_found",
        405: "method_not_allowed",
        400: "malformed",
        401: "unauthorized",
        403: "forbidden",
    }
    code = codes.get(exc.status_code, "internal" if exc.status_code >= 500 else "malformed")
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(code, "error")
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request) or [headers.get("Allow", "GET")])
    return problem(request, status=exc.status_code, code=code, detail=detail, headers=headers)


_TEMPLATE_PARAM = re.compile(r"\\{[^/]+?\\}")


def allowed_methods(request: Request) -> list[str]:
    """Every method the documented paths matching this request's path serve (several routes may share one).

    Starlette's ``Allow`` names the first partially matching route's methods only.
    """
    try:
        paths: dict[str, Any] = request.app.openapi().get("paths", {})
    except Exception:
        return []
    found: set[str] = set()
    for template, item in paths.items():
        pattern = _TEMPLATE_PARAM.sub("[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            found.update(m.upper() for m in item if m in {"get", "put", "post", "delete", "patch"})
    return sorted(found)


def internal_error(request: Request, exc: BaseException) -> JSONResponse:
    """A bug: logged once with its traceback, answered with nothing but the request id."""
    log.error("request_failed", path=request.url.path, method=request.method, exc_info=exc)
    return problem(
        request,
        status=500,
        code="internal",
        detail=f"internal error; quote request id {request_id(request)} when reporting it",
    )


def install(app: FastAPI) -> None:
    """Register the one error mapping on an app."""
    app.add_exception_handler(errors.StacklError, _stackl_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
