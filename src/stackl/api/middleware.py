"""Per-request context: a request id on every request, response and log line, and the last-resort 500.

A raw ASGI middleware (not ``BaseHTTPMiddleware``) so that streaming responses and long-polls pass through
untouched. Any exception a route lets escape is a bug: it is logged once and answered with a problem body
that reveals nothing but the request id.
"""

import re
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackl.api import problems
from stackl.domain.clock import Clock
from stackl.domain.ids import ulid

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = structlog.get_logger(__name__)


class RequestContextMiddleware:
    """Assign ``X-Request-ID`` (echoed when valid, else generated) and turn escaped exceptions into 500s."""

    def __init__(self, app: ASGIApp, *, clock: Clock) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else ulid(self.clock.now())
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if started:  # the response is half sent: nothing better to do than log and drop it
                    log.error("response_failed", path=scope.get("path"), exc_info=exc)
                    return
                response = problems.internal_error(Request(scope), exc)
                await response(scope, receive, send_with_id)


def client_addr(scope: dict[str, Any]) -> str:
    """The peer address of a request, for audit and logs."""
    client = scope.get("client")
    return str(client[0]) if client else ""
