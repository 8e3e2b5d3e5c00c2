"""The request body limit, enforced in the ASGI layer on every route, before anything reads the body.

FastAPI reads and validates a pydantic body before a route's dependencies run, so a limit inside a route
or the access check comes too late: a 200 MB body to ``/agents/register`` used to be held in memory before the
401. This middleware sits in front of the whole app (authentication, routes, the UI) and:

- answers 413 at once when the declared ``Content-Length`` exceeds ``server.max_body_bytes``, without
  reading a byte of the body;
- counts the bytes of a body as they arrive (chunked uploads declare no length) and, at the first byte over
  the limit, stops handing chunks to the app and answers 413, whatever the app made of the interruption;
- answers 408 when a body pauses longer than ``server.body_read_timeout_s`` between chunks (a slow-loris
  on the body; the header phase is bounded by the server protocol, ``processes.http``).

Both answers are problem+json bodies. The rest of the body is never handed to the app: the server protocol
discards what still arrives for at most ``server.header_timeout_s``, then closes the connection
(``processes.http``). Closing at once would reset the connection before the client read the answer.
"""

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackl.api import problems
from stackl.api.bodies import declared_length


class _BodyRefused(Exception):
    """Raised into the app's ``receive`` once its body is refused; the middleware answers instead."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class BodyLimitMiddleware:
    """Refuse request bodies beyond ``max_body_bytes`` (413) or stalling ``body_read_timeout_s`` (408)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_read_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout_s = body_read_timeout_s

    def _too_large(self) -> _BodyRefused:
        return _BodyRefused(
            413,
            "payload_too_large",
            f"request body exceeds {self.max_body_bytes} bytes (server.max_body_bytes)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = declared_length(headers.get(b"content-length", b"").decode("latin-1"))
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(scope, receive, send, self._too_large())
            return
        received = 0
        body_done = False
        refused: _BodyRefused | None = None
        started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done, refused
            if refused is not None:
                raise refused
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline then
                return await receive()
            try:
                async with asyncio.timeout(self.body_read_timeout_s):
                    message = await receive()
            except TimeoutError:
                refused = _BodyRefused(
                    408,
                    "request_timeout",
                    f"the request body paused for more than {self.body_read_timeout_s:g} s",
                )
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = self._too_large()
                    raise refused
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return  # whatever the app answers to the interruption (400, 500), the refusal is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refused is None:
                raise  # a failure of its own: the request context middleware answers it
        if refused is not None and not started:
            await _refuse(scope, receive, send, refused)


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: _BodyRefused) -> None:
    request: Any = Request(scope)
    response = problems.problem(
        request,
        status=refusal.status,
        code=refusal.code,
        detail=refusal.detail,
        problem_errors=[{"loc": ["body"], "msg": refusal.detail, "type": refusal.code}],
    )
    await response(scope, receive, send)
