"""The AuditLog port: entries of mutating requests and agent claims, and the in-memory fake.

An entry says who (subject, role, token), what (action, method, path, resource, revision, task), when and with
which outcome (status code, ``success`` / ``denied`` / ``error``); never a request body (spec/api.md §B.7).
Queries return newest first; the cursor is the id (a ULID) of the last entry of the previous page.

An entry may be written before its request runs (``pending``, so no change is ever made unaudited) and then
completed with the outcome by ``put``, or inside the transaction of the change itself (``append(tx=)``).
"""

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from stackl.datastore.base import Page, Transaction
from stackl.domain.stored import AuditEntry as AuditEntry  # the record lives in the domain; re-exported here

AuditResult = Literal["success", "denied", "error", "pending"]
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
    async def append(self, entry: AuditEntry, *, tx: Transaction | None = None) -> None:
        """Store one new entry; in ``tx`` (commits or rolls back with it) when given.

        Raises:
            StoreUnavailable: the database cannot be reached or refuses the write.
        """

    @abc.abstractmethod
    async def put(self, entry: AuditEntry) -> None:
        """Store an entry, replacing the one with its id (a ``pending`` entry gets its outcome).

        Raises:
            StoreUnavailable: the database cannot be reached or refuses the write.
        """

    @abc.abstractmethod
    async def query(self, query: AuditQuery) -> Page[AuditEntry]:
        """Entries matching ``query``, newest first, one page."""


@dataclass
class InMemoryAuditLog(AuditLog):
    """The AuditLog fake for unit tests and the in-memory app."""

    entries: list[AuditEntry] = field(default_factory=list)

    async def append(self, entry: AuditEntry, *, tx: Transaction | None = None) -> None:
        if any(e.id == entry.id for e in self.entries):
            raise ValueError("duplicate audit entry")
        on_commit = getattr(tx, "on_commit", None)  # the in-memory store's transaction (no import: a fake)
        if on_commit is not None:  # added when the transaction commits, as on SQL
            on_commit(after=lambda: self.entries.append(entry))
        else:
            self.entries.append(entry)

    async def put(self, entry: AuditEntry) -> None:
        self.entries = [e for e in self.entries if e.id != entry.id] + [entry]

    async def query(self, query: AuditQuery) -> Page[AuditEntry]:
        found = [
            e
            for e in sorted(self.entries, key=lambda e: e.id, reverse=True)
            if query.matches(e) and (query.cursor is None or e.id < query.cursor)
        ]
        if len(found) > query.limit:
            return Page(items=found[: query.limit], next_cursor=found[query.limit - 1].id)
        return Page(items=found)
