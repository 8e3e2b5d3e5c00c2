"""The audit log: one entry per mutating request (refused ones included) and per agent job claim.

Entries are written by the API's middleware once the response status is known (spec/api.md §B.7): who
(subject, role, token id; ``anonymous`` when no valid token came), what (action, method, path, resource,
revision, task id), when, and the outcome (``success`` below 400, ``denied`` for 401/403, else ``error``).
A request body is never stored. A failing audit write is logged and does not fail the request.
"""

from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog

from stackl import errors
from stackl.datastore.audit import MAX_LIMIT, AuditEntry, AuditQuery
from stackl.datastore.base import Page
from stackl.domain.ids import ulid
from stackl.usecases.ports import Ports

log = structlog.get_logger(__name__)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32, as domain.ids
_last_id = ""


def _next_id(moment: datetime) -> str:
    """A ULID above every id this process gave before, so entries of one millisecond keep their order."""
    global _last_id
    candidate = ulid(moment)
    if candidate <= _last_id:
        value = 0
        for char in _last_id:
            value = value * 32 + _ALPHABET.index(char)
        value += 1
        chars = []
        for _ in range(len(_last_id)):
            chars.append(_ALPHABET[value & 31])
            value >>= 5
        candidate = "".join(reversed(chars))
    _last_id = candidate
    return candidate


def result_of(status_code: int) -> str:
    """``success``, ``denied`` (401, 403) or ``error``."""
    if status_code < 400:
        return "success"
    return "denied" if status_code in (401, 403) else "error"


async def append(ports: Ports, entry: AuditEntry) -> None:
    """Store an entry (its id and time are set here when empty); never raises."""
    now = ports.clock.now()
    if not entry.id:
        entry = replace(entry, id=_next_id(entry.time or now))
    try:
        await ports.audit.append(entry)
    except errors.StacklError as exc:
        log.error("audit_write_failed", error=exc.message, request_id=entry.request_id)


async def query(
    ports: Ports,
    *,
    subject: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_name: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[AuditEntry]:
    """``GET /audit``: entries matching every given filter, newest first.

    Raises:
        InvalidInput: a filter is out of range.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidInput(
            f"limit must be between 1 and {MAX_LIMIT}",
            errors=[{"loc": ["query", "limit"], "msg": "out of range", "type": "value_error"}],
        )
    if result is not None and result not in ("success", "denied", "error"):
        raise errors.InvalidInput(
            "result must be success, denied or error",
            errors=[{"loc": ["query", "result"], "msg": "unknown result", "type": "value_error"}],
        )
    return await ports.audit.query(
        AuditQuery(
            subject=subject,
            action=action,
            resource_type=resource_type,
            resource_name=resource_name,
            result=result,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    )


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    """An entry as ``GET /audit`` shows it."""
    view: dict[str, Any] = {
        "id": entry.id,
        "time": entry.time.isoformat().replace("+00:00", "Z"),
        "subject": entry.subject,
        "role": entry.role,
        "token_id": entry.token_id,
        "action": entry.action,
        "method": entry.method,
        "path": entry.path,
        "resource": {"type": entry.resource_type, "name": entry.resource_name},
        "revision": entry.revision,
        "task_id": entry.task_id,
        "status_code": entry.status_code,
        "result": entry.result,
        "request_id": entry.request_id,
        "remote_addr": entry.remote_addr,
        "user_agent": entry.user_agent,
    }
    if entry.detail:
        view["detail"] = entry.detail
    return view
