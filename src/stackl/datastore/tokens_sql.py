"""SqlTokenStore: API tokens in the ``api_tokens`` table of the document store's database.

It runs in the store's own transactions, so it shares its engine, the SQLite writer queue and the error
translation (database trouble is ``StoreUnavailable``).
"""

import builtins
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stackl.datastore import dialects
from stackl.datastore.schema import api_tokens
from stackl.datastore.sql import SqlDocumentStore, SqlTransaction
from stackl.datastore.tokens import TokenRecord, TokenStore

_T = api_tokens.c


class SqlTokenStore(TokenStore):
    """The TokenStore on an open ``SqlDocumentStore``'s database."""

    def __init__(self, store: SqlDocumentStore) -> None:
        self._store = store

    @asynccontextmanager
    async def _connection(self, *, readonly: bool = False) -> AsyncIterator[AsyncConnection]:
        async with self._store.transaction(readonly=readonly) as tx:
            if not isinstance(tx, SqlTransaction):  # pragma: no cover - the store makes only these
                raise TypeError(type(tx).__name__)
            yield tx.connection

    async def _rows(self, statement: sa.Executable) -> builtins.list[TokenRecord]:
        async with self._connection(readonly=True) as connection:
            with dialects.wrap_errors():
                rows = (await connection.execute(statement)).all()
        return [_record(row) for row in rows]

    async def add(self, record: TokenRecord) -> None:
        async with self._connection() as connection:
            with dialects.wrap_errors():
                await connection.execute(api_tokens.insert().values(**asdict(record)))

    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        found = await self._rows(sa.select(api_tokens).where(_T.hash == token_hash))
        return found[0] if found else None

    async def get(self, token_id: str) -> TokenRecord | None:
        found = await self._rows(sa.select(api_tokens).where(_T.id == token_id))
        return found[0] if found else None

    async def list(self, *, include_revoked: bool = False) -> builtins.list[TokenRecord]:
        statement = sa.select(api_tokens).order_by(_T.created_at, _T.id)
        if not include_revoked:
            statement = statement.where(_T.revoked_at.is_(None))
        return await self._rows(statement)

    async def revoke(self, token_id: str, *, at: datetime) -> bool:
        statement = (
            api_tokens.update().where(_T.id == token_id, _T.revoked_at.is_(None)).values(revoked_at=at)
        )
        async with self._connection() as connection:
            with dialects.wrap_errors():
                return (await connection.execute(statement)).rowcount == 1

    async def touch(self, token_id: str, *, at: datetime) -> None:
        async with self._connection() as connection:
            with dialects.wrap_errors():
                await connection.execute(api_tokens.update().where(_T.id == token_id).values(last_used_at=at))


def _record(row: sa.Row[Any]) -> TokenRecord:
    return TokenRecord(**{f.name: getattr(row, f.name) for f in fields(TokenRecord)})
