"""The audit log: one entry per mutating request (refused ones included) and per agent job claim.

Entries say who (subject, role, token id; ``anonymous`` when no valid token came), what (action, method, path,
resource, revision, task id), when, and the outcome (``success`` below 400, ``denied`` for 401/403, else
``error``) (spec/api.md §B.7). A request body is never stored.

No change is made unaudited (issue 15): once a mutating request is authorized, ``begin`` writes its entry as
``pending`` *before* the route runs, and a request whose entry cannot be written fails with 503 without doing
anything; an agent's claim writes its entry in the claim's own transaction. When the response is known, the
API's middleware completes the entry (``append`` with its id). A refused request (nothing changed) and the
completion of a pending entry are written after the response; if that write fails, the entry is logged in
full (``audit_write_failed``) and a pending entry keeps saying that the request was made.
"""

from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

import structlog

from stackl import errors
from stackl.datastore.audit import MAX_LIMIT, AuditEntry, AuditQuery
from stackl.datastore.base import Page, Transaction
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


PENDING = "pending"  # written before the request ran; completed with its outcome afterwards
RESULTS = ("success", "denied", "error", PENDING)


def result_of(status_code: int) -> str:
    """``success``, ``denied`` (401, 403) or ``error``."""
    if status_code < 400:
        return "success"
    return "denied" if status_code in (401, 403) else "error"


def with_id(ports: Ports, entry: AuditEntry) -> AuditEntry:
    """The entry with a fresh id (ULIDs above every earlier one of this process) when it has none."""
    return entry if entry.id else replace(entry, id=_next_id(entry.time or ports.clock.now()))


async def begin(ports: Ports, entry: AuditEntry, *, tx: Transaction | None = None) -> AuditEntry:
    """Write the entry of a request about to change something (``pending`` unless ``entry`` has a result).

    Returns the entry as written, with its id: ``append`` completes it later. In ``tx`` when given, so that
    the entry commits (or rolls back) with the change.

    Raises:
        StoreUnavailable: the entry cannot be written; the request must not go on.
    """
    entry = replace(
        entry, id=entry.id or _next_id(entry.time or ports.clock.now()), result=entry.result or PENDING
    )
    try:
        await ports.audit.append(entry, tx=tx)
    except errors.StacklError as exc:
        log.error("audit_write_failed", error=exc.message, **_fields(entry))
        raise errors.StoreUnavailable(
            f"the audit log cannot be written, so nothing was changed: {exc.message}"
        ) from exc
    return entry


async def append(ports: Ports, entry: AuditEntry) -> None:
    """Store an entry, or complete the pending one with the same id; never raises (logs the entry instead).

    Its id is set here when empty.
    """
    now = ports.clock.now()
    try:
        if entry.id:
            await ports.audit.put(entry)
        else:
            await ports.audit.append(replace(entry, id=_next_id(entry.time or now)))
    except errors.StacklError as exc:
        # Logged in full (an entry holds no secret and no body), so that it can be recovered from the logs.
        log.error("audit_write_failed", error=exc.message, **_fields(entry))


def _fields(entry: AuditEntry) -> dict[str, Any]:
    values = asdict(entry)
    values["audit_id"] = values.pop("id")
    values["time"] = entry.time.isoformat() if entry.time else None
    return values


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
    if result is not None and result not in RESULTS:
        raise errors.InvalidInput(
            "result must be success, denied, error or pending",
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
