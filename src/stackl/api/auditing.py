"""The audit entry of a request, written *before* a change is made (issue 15, defect 10).

The middleware used to write every entry after the response, and a failed write was only logged: with the
database down, changes went unaudited. Now ``write_ahead`` (called by the access check once a request is
authorized) writes the entry of every audited mutating request as ``pending`` before its route runs; when that
write fails the request fails with 503 and changes nothing. The middleware completes the entry with the
outcome once the response is known (it finds the id in ``request.state.audit_id``). An agent's claim (whose
long-polls mostly return nothing) and an agent's result instead write their entry in the use case's own
transaction, with the change (``reserved_entry``): one write fewer on the agents' hot path.

Which requests are audited is the middleware's rule (``NOT_AUDITED``, ``CLAIM``); this module only moves the
first write of those entries ahead of the change.
"""

from typing import Protocol

from fastapi import Request

from stackl.api.middleware import CLAIM, NOT_AUDITED, client_addr
from stackl.domain import auth
from stackl.domain.auth import Resource, Subject
from stackl.domain.stored import AuditEntry
from stackl.usecases import audit as audit_cases
from stackl.usecases.ports import Ports

# Agent calls whose use case writes the entry in its own transaction (so not ahead of it).
IN_TRANSACTION = frozenset({CLAIM, "post_job_result"})


class Found(Protocol):
    """What the access check found about a request (``deps.Access``)."""

    @property
    def subject(self) -> Subject: ...
    @property
    def operation(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def resource(self) -> Resource: ...


def entry_of(request: Request, found: Found, *, status_code: int = 0, result: str = "") -> AuditEntry:
    """The audit entry of ``request`` as far as it is known before its response (no id yet)."""
    ports: Ports = request.app.state.ports
    state = request.scope.get("state", {})
    return AuditEntry(
        id="",
        time=ports.clock.now(),
        subject=found.subject.name,
        role=found.subject.role,
        token_id=found.subject.token_id,
        action=found.action,
        method=request.method,
        path=request.url.path,
        resource_type=found.resource.type,
        resource_name=found.resource.name,
        status_code=status_code,
        result=result,
        request_id=str(state.get("request_id", "")),
        remote_addr=client_addr(request.scope),
        user_agent=request.headers.get("user-agent", "")[:512],
    )


async def write_ahead(request: Request, found: Found) -> None:
    """Write the pending entry of an audited mutating request before its route runs.

    Raises:
        StoreUnavailable: the entry cannot be written (a 503: the route does not run, nothing changes).
    """
    if (
        request.method not in auth.MUTATING_METHODS
        or found.operation in NOT_AUDITED
        or found.operation in IN_TRANSACTION
    ):
        return
    ports: Ports = request.app.state.ports
    written = await audit_cases.begin(ports, entry_of(request, found))
    request.state.audit_id = written.id


def reserved_entry(request: Request, found: Found) -> AuditEntry:
    """The entry of an ``IN_TRANSACTION`` operation, written by its use case with the change (id reserved now).

    When the use case changes nothing (a claim that found no job, a refused or repeated result), it writes
    nothing, and the middleware writes the entry with the outcome after the response (if audited at all).
    """
    ports: Ports = request.app.state.ports
    entry = entry_of(request, found, status_code=200, result="success")
    reserved = audit_cases.with_id(ports, entry)
    request.state.audit_id = reserved.id
    return reserved
