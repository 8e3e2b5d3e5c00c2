"""SqlTokenStore: API tokens in ``api_tokens`` and UI sessions in ``ui_sessions`` of the store's database.

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
from stackl.datastore.schema import api_tokens, ui_sessions
from stackl.datastore.sql import SqlDocumentStore, SqlTransaction
from stackl.datastore.tokens import SessionRecord, TokenRecord, TokenStore

_T = api_tokens.c
_S = ui_sessions.c


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

    async def _write(self, statement: sa.Executable) -> int:
        async with self._connection() as connection:
            with dialects.wrap_errors():
                return int((await connection.execute(statement)).rowcount)

    async def add_session(self, record: SessionRecord) -> None:
        await self._write(ui_sessions.insert().values(**asdict(record)))

    async def session(self, session_hash: str) -> SessionRecord | None:
        async with self._connection(readonly=True) as connection:
            with dialects.wrap_errors():
                row = (
                    await connection.execute(sa.select(ui_sessions).where(_S.hash == session_hash))
                ).first()
        return SessionRecord(**{f.name: getattr(row, f.name) for f in fields(SessionRecord)}) if row else None

    async def touch_session(self, session_hash: str, *, at: datetime) -> None:
        await self._write(ui_sessions.update().where(_S.hash == session_hash).values(last_seen_at=at))

    async def revoke_session(self, session_hash: str, *, at: datetime) -> bool:
        statement = (
            ui_sessions.update().where(_S.hash == session_hash, _S.revoked_at.is_(None)).values(revoked_at=at)
        )
        return await self._write(statement) == 1

    async def revoke_sessions(self, token_id: str, *, at: datetime) -> int:
        statement = (
            ui_sessions.update().where(_S.token_id == token_id, _S.revoked_at.is_(None)).values(revoked_at=at)
        )
        return await self._write(statement)

    async def prune_sessions(self, *, before: datetime) -> int:
        statement = ui_sessions.delete().where(
            sa.or_(_S.expires_at < before, sa.and_(_S.revoked_at.is_not(None), _S.revoked_at < before))
        )
        return await self._write(statement)


def _record(row: sa.Row[Any]) -> TokenRecord:
    return TokenRecord(**{f.name: getattr(row, f.name) for f in fields(TokenRecord)})
