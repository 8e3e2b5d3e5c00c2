"""Per-request context: a request id on every request, response and log line, the audit log, the last 500.

A raw ASGI middleware (not ``BaseHTTPMiddleware``) so that streaming responses and long-polls pass through
untouched. Any exception a route lets escape is a bug: it is logged once and answered with a problem body
that reveals nothing but the request id.

Audit (spec/api.md §B.7): once a mutating request's response has started, an entry is written from what the
access check left in ``request.state.access`` (who, which action on which resource) and the response (status,
``Stackl-Revision``, ``Stackl-Task-Id``). Agent heartbeats, log batches and job starts are not audited (they
are liveness and progress, not changes) and neither are the read-only POSTs (plan, policy evaluation); an
agent's claim is, when it returned jobs, with their ids, and so is its result. Requests that reached no
route (404, 405 from the router) are not audited. An entry already written before the change (as
``pending``, by ``api/auditing.py``; its id in ``audit_id``) is completed here with the outcome.

Token path prefix (spec/api.md §0.2, off unless ``auth.token_path_prefix``): ``/t/<token>/<path>`` is served
as ``/<path>`` with the token taken from the prefix; logs, audit and problem bodies see only ``/<path>``.
"""

import json
import re
from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackl.api import problems
from stackl.domain import auth
from stackl.domain.clock import Clock
from stackl.domain.ids import ulid
from stackl.domain.stored import AuditEntry
from stackl.usecases import audit as audit_cases
from stackl.usecases.ports import Ports

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TOKEN_PREFIX = re.compile(r"^/t/(?P<token>[^/]+)(?P<rest>/.*)?$")
# POSTs that change nothing, and agent calls too frequent and too small to be worth an entry each.
NOT_AUDITED = frozenset(
    {
        "plan_stack_instance",
        "evaluate_policy",
        "test_policy",
        "ui_plan_submit",
        "agent_heartbeat",
        "post_job_events",
        "start_job",  # the claim before it and the result after it are audited
    }
)
CLAIM = "claim_jobs"
MAX_CLAIM_BODY = 64 * 1024 * 1024
log = structlog.get_logger(__name__)


class RequestContextMiddleware:
    """Assign ``X-Request-ID`` (echoed when valid, else generated) and turn escaped exceptions into 500s."""

    def __init__(
        self, app: ASGIApp, *, clock: Clock, ports: Ports | None = None, token_path_prefix: bool = False
    ) -> None:
        self.app = app
        self.clock = clock
        self.ports = ports
        self.token_path_prefix = token_path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else ulid(self.clock.now())
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        if self.token_path_prefix and (match := _TOKEN_PREFIX.match(scope.get("path", ""))):
            state["path_token"] = match["token"]
            scope["path"] = match["rest"] or "/"
            scope["raw_path"] = scope["path"].encode()
        started = False
        status = 0
        response_headers: dict[bytes, bytes] = {}
        claim_body: list[bytes] = []

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                response_headers.update((k.lower(), v) for k, v in message["headers"])
            elif (
                message["type"] == "http.response.body"
                and status == 200
                and _access_of(state, CLAIM)
                and sum(map(len, claim_body)) < MAX_CLAIM_BODY
            ):
                claim_body.append(message.get("body", b""))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if started:  # the response is half sent: nothing better to do than log and drop it
                    log.error("response_failed", path=scope.get("path"), exc_info=exc)
                    status = 500
                else:
                    response = problems.internal_error(Request(scope), exc)
                    await response(scope, receive, send_with_id)
            finally:
                if self.ports is not None and status:
                    await self._audit(scope, headers, status, response_headers, b"".join(claim_body))

    async def _audit(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        status: int,
        response_headers: dict[bytes, bytes],
        claim_body: bytes,
    ) -> None:
        """Write the audit entry of a finished request, when it is one that is audited."""
        state = scope.get("state", {})
        found = state.get("access")
        method = str(scope.get("method", ""))
        if found is None or found.operation in NOT_AUDITED or self.ports is None:
            return
        if found.operation == CLAIM:
            if status == 204:  # nothing claimed: a long-poll that timed out
                return
        elif method not in auth.MUTATING_METHODS:
            return
        detail: dict[str, Any] | None = None
        if found.operation == CLAIM and status == 200:
            detail = {"jobs": _claimed(claim_body)}
        subject = found.subject
        revision = response_headers.get(b"stackl-revision", b"").decode("latin-1")
        await audit_cases.append(
            self.ports,
            AuditEntry(
                id=str(state.get("audit_id") or ""),  # written ahead (api/auditing.py): completed here
                time=self.clock.now(),
                subject=subject.name,
                role=subject.role,
                token_id=subject.token_id,
                action=found.action,
                method=method,
                path=str(scope.get("path", "")),
                resource_type=found.resource.type,
                resource_name=found.resource.name,
                revision=int(revision) if revision.isdigit() else None,
                task_id=response_headers.get(b"stackl-task-id", b"").decode("latin-1") or None,
                status_code=status,
                result=audit_cases.result_of(status),
                request_id=str(state.get("request_id", "")),
                remote_addr=client_addr(scope),
                user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:512],
                detail=detail,
            ),
        )


def client_addr(scope: MutableMapping[str, Any]) -> str:
    """The peer address of a request, for audit and logs."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def _access_of(state: dict[str, Any], operation: str) -> bool:
    found = state.get("access")
    return found is not None and found.operation == operation


def _claimed(body: bytes) -> list[dict[str, Any]]:
    """The ids and attempts of the jobs a claim answered: never their payloads, which carry secrets."""
    try:
        jobs = json.loads(body).get("jobs", [])
    except (ValueError, AttributeError):
        return []
    return [
        {"job_id": j.get("job_id"), "attempt": j.get("attempt"), "task_id": j.get("task_id")}
        for j in jobs
        if isinstance(j, dict)
    ]
