"""SqlAuditLog: the audit log in the ``audit_log`` table of the document store's database.

Its writes run in the store's own transactions (or in the caller's, for an entry that must commit with a change).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stackl.datastore import dialects
from stackl.datastore.audit import MAX_LIMIT, AuditEntry, AuditLog, AuditQuery
from stackl.datastore.base import Page, Transaction
from stackl.datastore.schema import audit_log
from stackl.datastore.sql import SqlDocumentStore, SqlTransaction

_A = audit_log.c


class SqlAuditLog(AuditLog):
    """The AuditLog on an open ``SqlDocumentStore``'s database."""

    def __init__(self, store: SqlDocumentStore) -> None:
        self._store = store

    @asynccontextmanager
    async def _connection(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        async with self._store.transaction(readonly=readonly) as tx:
            if not isinstance(tx, SqlTransaction):  # pragma: no cover - the store makes only these
                raise TypeError(type(tx).__name__)
            yield tx.connection

    async def append(self, entry: AuditEntry, *, tx: Transaction | None = None) -> None:
        if tx is not None:
            if not isinstance(tx, SqlTransaction):  # pragma: no cover - the store makes only these
                raise TypeError(type(tx).__name__)
            with dialects.wrap_errors():
                await tx.connection.execute(audit_log.insert().values(**asdict(entry)))
            return
        async with self._connection() as connection:
            with dialects.wrap_errors():
                await connection.execute(audit_log.insert().values(**asdict(entry)))

    async def put(self, entry: AuditEntry) -> None:
        values = asdict(entry)
        async with self._connection() as connection:
            with dialects.wrap_errors():
                updated = await connection.execute(
                    audit_log.update().where(_A.id == entry.id).values(**values)
                )
                if updated.rowcount == 0:  # written in a transaction that rolled back, or never written
                    await connection.execute(audit_log.insert().values(**values))

    async def query(self, query: AuditQuery) -> Page[AuditEntry]:
        limit = max(1, min(query.limit, MAX_LIMIT))
        statement = sa.select(audit_log).order_by(_A.id.desc()).limit(limit + 1)
        for column, wanted in (
            (_A.subject, query.subject),
            (_A.action, query.action),
            (_A.resource_type, query.resource_type),
            (_A.resource_name, query.resource_name),
            (_A.result, query.result),
        ):
            if wanted is not None:
                statement = statement.where(column == wanted)
        if query.since is not None:
            statement = statement.where(_A.time >= query.since)
        if query.until is not None:
            statement = statement.where(_A.time < query.until)
        if query.cursor:
            statement = statement.where(_A.id < query.cursor)
        async with self._connection(readonly=True) as connection:
            with dialects.wrap_errors():
                rows = (await connection.execute(statement)).all()
        items = [_entry(row) for row in rows]
        if len(items) > limit:
            items = items[:limit]
            return Page(items=items, next_cursor=items[-1].id)
        return Page(items=items)


def _entry(row: sa.Row[Any]) -> AuditEntry:
    return AuditEntry(**{f.name: getattr(row, f.name) for f in fields(AuditEntry)})
