"""The AuditLog port: append-only entries of mutating requests and agent claims, and the in-memory fake.

An entry says who (subject, role, token), what (action, method, path, resource, revision, task), when and with
which outcome (status code, ``success`` / ``denied`` / ``error``); never a request body (spec/api.md §B.7).
Queries return newest first; the cursor is the id (a ULID) of the last entry of the previous page.
"""

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from stackl.datastore.base import Page
from stackl.domain.stored import AuditEntry as AuditEntry  # the record lives in the domain; re-exported here

AuditResult = Literal["success", "denied", "error"]
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of ``GET /audit``; every given one must match."""

    subject: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_name: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    cursor: str | None = None

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes every filter (the cursor excluded)."""
        pairs = (
            (self.subject, entry.subject),
            (self.action, entry.action),
            (self.resource_type, entry.resource_type),
            (self.resource_name, entry.resource_name),
            (self.result, entry.result),
        )
        if any(wanted is not None and wanted != value for wanted, value in pairs):
            return False
        if self.since is not None and entry.time < self.since:
            return False
        return self.until is None or entry.time < self.until


class AuditLog(abc.ABC):
    """Stores audit entries."""

    @abc.abstractmethod
    async def append(self, entry: AuditEntry) -> None:
        """Store one entry."""

    @abc.abstractmethod
    async def query(self, query: AuditQuery) -> Page[AuditEntry]:
        """Entries matching ``query``, newest first, one page."""


@dataclass
class InMemoryAuditLog(AuditLog):
    """The AuditLog fake for unit tests and the in-memory app."""

    entries: list[AuditEntry] = field(default_factory=list)

    async def append(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    async def query(self, query: AuditQuery) -> Page[AuditEntry]:
        found = [
            e
            for e in sorted(self.entries, key=lambda e: e.id, reverse=True)
            if query.matches(e) and (query.cursor is None or e.id < query.cursor)
        ]
        if len(found) > query.limit:
            return Page(items=found[: query.limit], next_cursor=found[query.limit - 1].id)
        return Page(items=found)
