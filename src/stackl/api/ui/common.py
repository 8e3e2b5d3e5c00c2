"""What every UI page shares: the Jinja2 environment, the route class, access and CSRF checks, helpers.

Pages are rendered on the server from templates under ``templates/`` with autoescape on for every template, so
any document name or value is shown as text, never as markup. A little htmx (vendored under ``static/``)
polls status fragments; every page works without it.

- **Access**: every UI route depends on `ui_access` (added once, on the UI router): the same authentication
  and authorization as the API (``deps.decide``), with a Bearer header or the session cookie set by the
  login page (``login_router``). The cookie carries an opaque server-side session id, never the token
  (``usecases.ui_sessions``: stored hashed, bound to the token, idle and absolute expiry, revoked at
  sign-out and with the token); it is HttpOnly, SameSite=Strict, path ``/ui``, Secure over HTTPS. Without a
  valid session a page redirects to ``/ui/login``; a refusal is the 403 page with the policy's reasons. The
  static files need no token.
- **Errors**: `UIRoute` turns a `StacklError` (and a bad query parameter) into an HTML error page with the
  status the API would give (``problems.status_of``), instead of a problem+json body.
- **CSRF**: every POST depends on `same_origin`: the browser's ``Origin`` header (else ``Referer``) must name
  the host the request was sent to. Browsers always send ``Origin`` on a cross-site form POST or fetch and a
  page cannot forge it, so a form on another site can never make the operator's browser change STACKL. The
  session cookie is SameSite=Strict as well, so a cross-site request does not even carry it.
"""

import math
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2
import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from stackl import errors
from stackl.api import deps, problems
from stackl.config import Settings
from stackl.domain import revisions
from stackl.domain.stored import LogLine
from stackl.usecases import ui_sessions
from stackl.usecases.ports import Ports

PREFIX = "/ui"
FORM_MAX_BYTES = 1024 * 1024

SECURITY_HEADERS = {
    # Scripts and styles only from /ui/static: an injected <script> would not run even if it got through.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

STATUS_ORDER = ("in_progress", "FAILED", "READY", "SKIPPED")


def _when(value: object) -> str:
    """``2025-05-01T10:15:30.123Z`` → ``2025-05-01 10:15:30`` (UTC); datetimes too; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text[:19].replace("T", " ") if len(text) >= 19 else text


def _yaml(value: object) -> str:
    if isinstance(value, dict):
        return revisions.to_yaml(value)
    text: str = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


def _scalar(value: object) -> str:
    """A parameter value on one line: strings as they are, anything else as compact YAML/JSON."""
    if isinstance(value, str):
        return value
    text: str = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _status_class(value: object) -> str:
    text = str(value or "").lower()
    return {
        "ready": "ok",
        "succeeded": "ok",
        "online": "ok",
        "chosen": "ok",
        "feasible": "ok",
        "infeasible": "bad",
        "empty": "off",
        "pass": "ok",
        "failed": "bad",
        "fail": "bad",
        "rejected": "bad",
        "cancelled": "bad",
        "offline": "off",
        "never_seen": "off",
        "skipped": "off",
        "skip": "off",
        "spare": "off",
    }.get(text, "busy")


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("stackl.api.ui", "templates"),
    autoescape=True,  # every template, whatever its name: user content is always escaped
    undefined=jinja2.ChainableUndefined,  # a field missing from an old document shows as empty
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    when=_when, yaml=_yaml, scalar=_scalar, status_class=_status_class, u=lambda v: quote(str(v), safe="")
)
ENV.globals.update(prefix=PREFIX)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **ctx: Any,
) -> HTMLResponse:
    """A page (or an htmx fragment) rendered from ``template`` with ``context`` and ``ctx``."""
    values = {**(context or {}), **ctx}
    caller = getattr(request.state, "caller", None)
    signed_in = deps.presented_session(request) is not None and getattr(caller, "authenticated", False)
    html = ENV.get_template(template).render(
        request=request, path=request.url.path, signed_in=signed_in, **values
    )
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def error_page(request: Request, exc: errors.StacklError, *, status: int | None = None) -> HTMLResponse:
    """The HTML page of an error, with the status the API gives the same error."""
    code = status or problems.status_of(exc)
    return render(
        request,
        "error.html",
        status=code,
        title=problems.TITLES.get(exc.code, "Error"),
        message=exc.message,
        items=exc.errors,
        code=code,
    )


class UIRoute(APIRoute):
    """An API route whose errors are HTML pages (the API's problem+json handlers stay for the API)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ui_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.Unauthenticated:
                return login_redirect(request)
            except errors.StacklError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                items: list[errors.ErrorItem] = [
                    {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
                    for e in exc.errors()
                ]
                return error_page(request, errors.InvalidInput("invalid request", errors=items), status=422)

        return ui_handler


PUBLIC_PAGES = frozenset({"ui_static"})


async def ui_access(request: Request) -> None:
    """The one place where UI requests are authenticated and authorized (see the module docstring).

    Raises:
        Unauthenticated: no valid token (``UIRoute`` answers with a redirect to the login page).
        Forbidden: the authorization policy refused.
    """
    request.state.ui = True
    name = str(getattr(request.scope.get("route"), "name", "") or "")
    if name in PUBLIC_PAGES:
        return
    await deps.decide(request, name)


def login_redirect(request: Request) -> Response:
    """To the login page, coming back to this page afterwards."""
    target = request.url.path if request.method == "GET" else PREFIX
    if request.url.query and request.method == "GET":
        target += "?" + request.url.query
    return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303)


def _safe_next(value: str) -> str:
    """Only a UI page of this server: never another site (no open redirect)."""
    if value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


def same_origin(request: Request) -> None:
    """CSRF protection of every UI POST: ``Origin`` (or ``Referer``) must be this server's own origin.

    Raises:
        Forbidden: the request came from another site, or the browser sent neither header.
    """
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "").lower()
    if source in ("", "null") or not host or urlsplit(source).netloc.lower() != host:
        raise errors.Forbidden(
            "form refused: it was not sent from a page of this server (Origin/Referer check)",
            reasons=["cross-site request"],
        )


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form body (the UI's only kind); the last value of a repeated field wins.

    Raises:
        PayloadTooLarge, UnsupportedMediaType, Malformed.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise errors.UnsupportedMediaType("UI forms are sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > FORM_MAX_BYTES:
        raise errors.PayloadTooLarge(f"a form is at most {FORM_MAX_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.Malformed("the form does not parse") from exc
    return {key: values[-1] for key, values in fields.items()}


def aggregate_status(entries: Sequence[Mapping[str, Any]]) -> str:
    """One word for an instance's steps.

    ``in_progress`` if any runs, else ``FAILED`` if any failed, else ``READY`` (skipped steps count as done);
    ``EMPTY`` when it has no step.
    """
    found = {str(e.get("status")) for e in entries}
    if not found:
        return "EMPTY"
    for status in STATUS_ORDER[:2]:
        if status in found:
            return status
    return "READY" if "READY" in found else "SKIPPED"


async def job_log(ports: Ports, job_id: str, *, attempt: int | None = None) -> list[LogLine]:
    """The stored (already masked) log lines of a job, one attempt or all of them.

    Temporary: reads the agent registry port directly until ``usecases/logs.py`` offers step logs.
    """
    return await ports.agents.logs(job_id, attempt=attempt)


login_router = APIRouter(prefix=PREFIX, tags=["ui"], route_class=UIRoute, include_in_schema=False)


@login_router.get("/login", name="ui_login")
async def login_page(request: Request, next: str = PREFIX) -> HTMLResponse:
    """The sign-in form (a token; there are no passwords)."""
    return render(request, "login.html", next=_safe_next(next), message="")


@login_router.post("/login", name="ui_login_submit", dependencies=[Depends(same_origin)])
async def login_submit(request: Request) -> Response:
    """Check the token and open a server-side session; the cookie carries the session's id only."""
    form = await read_form(request)
    target = _safe_next(form.get("next", PREFIX))
    ports: Ports = request.app.state.ports
    settings: Settings = request.app.state.settings
    internal = getattr(request.app.state, "internal_subjects", {})
    try:
        opened = await ui_sessions.open_session(
            ports,
            form.get("token", "").strip(),
            idle_s=settings.auth.ui_session_idle_s,
            max_s=settings.auth.ui_session_max_s,
            extra=internal,
        )
    except errors.Unauthenticated:
        return render(request, "login.html", status=401, next=target, message="invalid or expired token")
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    lifetime = (opened.expires_at - ports.clock.now()).total_seconds()
    response.set_cookie(
        deps.COOKIE,
        opened.session_id,
        max_age=max(math.ceil(lifetime), 1),  # the browser forgets it when the session ends at the latest
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return response


@login_router.post("/logout", name="ui_logout", dependencies=[Depends(same_origin)])
async def logout(request: Request) -> Response:
    """Sign out: the session is revoked on the server (a copy of the cookie is worthless), the cookie dropped."""
    session = deps.presented_session(request)
    if session is not None:
        await ui_sessions.close_session(request.app.state.ports, session)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(
        deps.COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
