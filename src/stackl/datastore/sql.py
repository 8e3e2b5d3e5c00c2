"""SqlDocumentStore: the DocumentStore on SQLite or PostgreSQL, written once in SQLAlchemy Core (async).

Every write is conditional: an existing row is changed by ``UPDATE … WHERE type AND name AND revision =
<the revision this transaction read>`` and a new key is added by ``INSERT … ON CONFLICT DO NOTHING``; zero
rows affected means a concurrent transaction got there first, and ``RevisionConflict`` tells the caller to
retry its transaction. The same write appends the history row and replaces the document's references, in
the same transaction. Each transaction remembers the rows it read (``get``, ``get_many``, ``list``), so
the usual read-validate-write costs one SELECT, and a second read of a key returns what the first saw.

Step progress (``domain/step_progress.py``): each document read also says whether the document has progress
rows (an ``EXISTS`` on the ``step_progress`` index), and only then are they read (one query per read, or per
chunk of ``get_many``/``list``) and applied to the body. ``put_progress`` locks the document row without
reading its body, then replaces the step's row: its cost does not depend on the document's size.

With a ``SecretBox`` the secret values of each body are encrypted on their way into ``documents`` and
``revisions`` and decrypted on the way out (``datastore/encryption.py``): the database holds no secret in clear,
and callers see the same bodies as without encryption.

On SQLite, write transactions start with ``BEGIN IMMEDIATE`` and are queued per process on an asyncio lock
(``dialects.Flavour.serialises_writers``), so they never conflict; on PostgreSQL (read committed) the
conditional statements catch every lost update. What differs between the two is in ``dialects.py``.

Cursors are ``rules`` cursors: the last (type, name) of a listing page, resuming with a row comparison on
the primary key; the last revision of a history page.
"""

import asyncio
import builtins
import copy
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stackl import errors
from stackl.datastore import dialects, migrate, rules
from stackl.datastore.base import (
    DocumentStore,
    ListQuery,
    Page,
    Reference,
    Referrer,
    RevisionEntry,
    StoredDocument,
    Transaction,
    WriteAction,
    WriteResult,
)
from stackl.datastore.encryption import SecretBox
from stackl.datastore.schema import counters as counters_table
from stackl.datastore.schema import doc_references, documents, revisions, step_progress
from stackl.domain.clock import Clock, SystemClock
from stackl.domain.step_progress import ProgressRow, apply_progress

Key = tuple[str, str]
MANY_CHUNK = 500  # names per IN (...) of get_many: far below every bound-parameter limit

_T: sa.BindParameter[str] = sa.bindparam("key_type")
_N: sa.BindParameter[str] = sa.bindparam("key_name")
_R: sa.BindParameter[int] = sa.bindparam("key_revision")
_KEY = (documents.c.type, documents.c.name)
_HAS_REFERENCES = (  # a write of a document that has no recorded references skips their DELETE
    sa.exists()
    .where(doc_references.c.from_type == documents.c.type, doc_references.c.from_name == documents.c.name)
    .label("has_references")
)
_PROGRESS = step_progress.c
_HAS_PROGRESS = (  # a read of a document that has no progress rows skips their SELECT
    sa.exists()
    .where(_PROGRESS.type == documents.c.type, _PROGRESS.name == documents.c.name)
    .label("has_progress")
)

# The statements of the hot path are built once, with bound parameters (``key_*`` select the row), so
# SQLAlchemy neither rebuilds them nor recomputes their cache keys on every call. An UPDATE takes its SET
# columns from the names of the other parameters.
_SELECT_MANY = sa.select(*documents.c, _HAS_REFERENCES, _HAS_PROGRESS).where(documents.c.type == _T)
_SELECT_ONE = _SELECT_MANY.where(documents.c.name == _N)
# In a write transaction the row is locked as it is read (PostgreSQL; SQLite has one writer anyway), so that
# concurrent read-modify-writes of one document queue instead of failing their conditional write.
_SELECT_ONE_FOR_WRITE = _SELECT_ONE.with_for_update()
_UPDATE_AT_REVISION = documents.update().where(
    documents.c.type == _T, documents.c.name == _N, documents.c.revision == _R
)
_INSERT_REVISION = revisions.insert()
_INSERT_REFERENCES = doc_references.insert()
_REFERENCES = doc_references.c
_DELETE_REFERENCES = doc_references.delete().where(_REFERENCES.from_type == _T, _REFERENCES.from_name == _N)
_SELECT_REFERRERS = (
    sa.select(_REFERENCES.from_type, _REFERENCES.from_name, _REFERENCES.path)
    .where(_REFERENCES.to_type == _T, _REFERENCES.to_name == _N)
    .order_by(_REFERENCES.from_type, _REFERENCES.from_name, _REFERENCES.path)
)
_SELECT_REVISION = sa.select(revisions).where(
    revisions.c.type == _T, revisions.c.name == _N, revisions.c.revision == _R
)
_SELECT_PROGRESS = (
    sa.select(step_progress).where(_PROGRESS.type == _T, _PROGRESS.name == _N).order_by(_PROGRESS.seq)
)
# put_progress holds the document as ``get`` does, but reads only its revision, never its body.
_LOCK_REVISION = (
    sa.select(documents.c.revision, documents.c.deleted)
    .where(documents.c.type == _T, documents.c.name == _N)
    .with_for_update()
)
_SELECT_VERSION = sa.select(
    documents.c.revision,
    documents.c.deleted,
    sa.select(sa.func.max(_PROGRESS.seq))
    .where(_PROGRESS.type == documents.c.type, _PROGRESS.name == documents.c.name)
    .scalar_subquery()
    .label("progress"),
).where(documents.c.type == _T, documents.c.name == _N)
_DELETE_STEP_PROGRESS = step_progress.delete().where(
    _PROGRESS.type == _T, _PROGRESS.name == _N, _PROGRESS.key == sa.bindparam("key_step")
)
_DELETE_PROGRESS_UP_TO = step_progress.delete().where(
    _PROGRESS.type == _T, _PROGRESS.name == _N, _PROGRESS.seq <= sa.bindparam("key_seq")
)
_DELETE_PROGRESS = step_progress.delete().where(_PROGRESS.type == _T, _PROGRESS.name == _N)
_INSERT_PROGRESS = step_progress.insert()
_COUNT = sa.select(sa.func.count()).where(documents.c.type == _T, documents.c.deleted.is_(False))


@dataclasses.dataclass(frozen=True, slots=True)
class _Seen:
    """A row as this transaction last read or wrote it; ``document`` is None for a tombstone."""

    revision: int
    document: StoredDocument | None
    has_references: bool
    has_progress: bool = False
    progress_read: int = 0  # the highest progress seq read: a write of the document deletes the rows up to it


class SqlDocumentStore(DocumentStore):
    """The DocumentStore on a SQL database; open it with ``async with`` (creates and disposes the engine)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        pool_size: int = 10,
        busy_timeout_s: float = 30.0,
        secret_box: SecretBox | None = None,
    ) -> None:
        self.kind = dialects.backend(url)
        self._url, self._pool_size, self._busy_timeout_s = url, pool_size, busy_timeout_s
        self._clock = clock or SystemClock()
        self._engine: AsyncEngine | None = None
        self._engines: dict[bool, AsyncEngine] = {}  # by ``readonly``: the options ride on the engine
        self._flavour = dialects.Flavour(kind=self.kind)
        self._insert_document = self._flavour.insert_if_absent(documents)  # built once, used by every create
        self._writers = asyncio.Lock()
        self._head, self._known = "", frozenset[str]()
        self._box = secret_box

    def _count_statement(self, *_: Any) -> None:
        self.statements += 1  # what waiting tasks cost the database is measured, not guessed (/metrics)

    async def __aenter__(self) -> Self:
        self._engine = dialects.create_engine(
            self._url, pool_size=self._pool_size, busy_timeout_s=self._busy_timeout_s
        )
        self._engines = {
            readonly: self._engine.execution_options(**self._flavour.transaction_options(readonly=readonly))
            for readonly in (False, True)
        }
        sa.event.listen(self._engine.sync_engine, "before_cursor_execute", self._count_statement)
        # Alembic reads the revision files: off the event loop, once per process (migrate caches them).
        self._head = await asyncio.to_thread(migrate.head)
        self._known = await asyncio.to_thread(migrate.known_revisions)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        engine, self._engine, self._engines = self._engine, None, {}
        if engine is not None:
            await engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """The open engine, for adapters sharing this database (the broker).

        Raises:
            RuntimeError: the store is not open.
        """
        if self._engine is None:
            raise RuntimeError("the store is not open: use `async with SqlDocumentStore(...)`")
        return self._engine

    def transaction(self, *, readonly: bool = False) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction(readonly=readonly)

    @asynccontextmanager
    async def _transaction(self, *, readonly: bool) -> AsyncIterator[Transaction]:
        engine = self._engines.get(readonly) or self.engine  # self.engine raises when not open
        async with self._writer_turn(readonly=readonly):
            with dialects.wrap_errors():
                connection = await engine.connect()
            try:
                with dialects.wrap_errors():
                    await connection.begin()
                yield SqlTransaction(
                    connection,
                    flavour=self._flavour,
                    clock=self._clock,
                    readonly=readonly,
                    insert_document=self._insert_document,
                    secret_box=self._box,
                )
                with dialects.wrap_errors():
                    await connection.commit()
            finally:
                await connection.close()  # rolls back whatever was not committed

    @asynccontextmanager
    async def _writer_turn(self, *, readonly: bool) -> AsyncIterator[None]:
        """On SQLite, queue this process's writers here rather than in SQLite's sleeping busy handler."""
        if readonly or not self._flavour.serialises_writers:
            yield
            return
        try:
            async with asyncio.timeout(self._busy_timeout_s):
                await self._writers.acquire()
        except TimeoutError as exc:
            raise errors.StoreUnavailable(f"no write turn within {self._busy_timeout_s} s") from exc
        try:
            yield
        finally:
            self._writers.release()

    async def ping(self) -> None:
        with dialects.wrap_errors():
            async with (self._engines.get(True) or self.engine).connect() as connection:
                await connection.execute(sa.select(1))
                heads = await connection.run_sync(migrate.current_heads)
        if heads == (self._head,):
            return
        if all(h in self._known for h in heads):
            raise errors.StoreUnavailable(dialects.SCHEMA_BEHIND)
        raise errors.StoreUnavailable(
            f"database schema {heads} is newer than this STACKL (latest {self._head})"
        )


class SqlTransaction(Transaction):
    """One database transaction on one pooled connection; ``connection`` is there for the broker."""

    def __init__(
        self,
        connection: AsyncConnection,
        *,
        flavour: dialects.Flavour,
        clock: Clock,
        readonly: bool,
        insert_document: sa.Insert,
        secret_box: SecretBox | None = None,
    ):
        self.connection = connection
        self._flavour, self._clock, self._readonly = flavour, clock, readonly
        self._insert_document = insert_document  # INSERT … ON CONFLICT DO NOTHING, built once per store
        self._seen: dict[Key, _Seen | None] = {}
        self._box = secret_box

    def _seal(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._box.seal(body) if self._box is not None else body

    def _document(self, row: sa.Row[Any]) -> StoredDocument:
        document = _document(row)
        if self._box is None:
            return document
        return dataclasses.replace(document, body=self._box.unseal(document.body))

    def _entry(self, row: sa.Row[Any]) -> RevisionEntry:
        entry = _entry(row)
        if self._box is None or entry.body is None:
            return entry
        return dataclasses.replace(entry, body=self._box.unseal(entry.body))

    async def _execute(self, statement: sa.Executable, parameters: Any = None) -> sa.CursorResult[Any]:
        with dialects.wrap_errors():
            return await self.connection.execute(statement, parameters)

    def _remember(self, row: sa.Row[Any]) -> StoredDocument | None:
        document = None if row.deleted else self._document(row)
        has_progress = bool(row.has_progress)
        self._seen[(row.type, row.name)] = _Seen(
            row.revision, document, bool(row.has_references), has_progress
        )
        return document

    async def _read(self, key: Key) -> _Seen | None:
        if key not in self._seen:
            statement = _SELECT_ONE if self._readonly else _SELECT_ONE_FOR_WRITE
            row = (await self._execute(statement, _key(key))).first()
            if row is None:
                self._seen[key] = None
            else:
                self._remember(row)
                await self._apply_progress([key])
        return self._seen[key]

    async def _apply_progress(self, keys: Sequence[Key]) -> None:
        """Read the progress rows of the keys just remembered that have some, and apply them to their bodies."""
        wanted: dict[str, list[str]] = {}
        for key in keys:
            seen = self._seen.get(key)
            if seen is not None and seen.has_progress and seen.document is not None:
                wanted.setdefault(key[0], []).append(key[1])
        for doc_type, names in wanted.items():
            for start in range(0, len(names), MANY_CHUNK):
                chunk = names[start : start + MANY_CHUNK]
                query = sa.select(step_progress).where(_PROGRESS.type == doc_type, _PROGRESS.name.in_(chunk))
                rows: dict[str, list[ProgressRow]] = {}
                for row in (await self._execute(query.order_by(_PROGRESS.seq))).all():
                    rows.setdefault(row.name, []).append(_progress_row(row))
                for name, found in rows.items():
                    self._apply((doc_type, name), found, fresh=True)

    def _apply(self, key: Key, rows: Sequence[ProgressRow], *, fresh: bool = False) -> None:
        """Apply rows to the remembered document; ``fresh``: its body was just parsed, no caller holds it."""
        seen = self._seen[key]
        if seen is None or seen.document is None:  # pragma: no cover - callers pass live keys only
            return
        document = seen.document
        body = document.body if fresh else copy.deepcopy(document.body)
        applied = apply_progress(body, rows, document.revision)
        document = dataclasses.replace(document, body=body, progress_seq=applied)
        read = max(seen.progress_read, *(row.seq for row in rows))
        self._seen[key] = dataclasses.replace(seen, document=document, progress_read=read)

    # --- reads -------------------------------------------------------------------------------------------
    async def get(self, *, doc_type: str, name: str) -> StoredDocument | None:
        seen = await self._read((doc_type, name))
        return seen.document if seen is not None else None

    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredDocument]:
        wanted = list(dict.fromkeys(keys))
        missing: dict[str, list[str]] = {}
        for doc_type, name in wanted:
            if (doc_type, name) not in self._seen:
                missing.setdefault(doc_type, []).append(name)
        for doc_type, names in missing.items():
            for start in range(0, len(names), MANY_CHUNK):
                chunk = names[start : start + MANY_CHUNK]
                query = _SELECT_MANY.where(documents.c.name.in_(chunk))
                rows = (await self._execute(query, {"key_type": doc_type})).all()
                self._seen.update(dict.fromkeys(((doc_type, n) for n in chunk), None))  # absent unless found
                for row in rows:
                    self._remember(row)
                await self._apply_progress([(doc_type, name) for name in chunk])
        found = {}
        for key in wanted:
            seen = self._seen[key]
            if seen is not None and seen.document is not None:
                found[key] = seen.document
        return found

    async def list(self, query: ListQuery) -> Page[StoredDocument]:
        rules.check_limit(query.limit)
        statement = (
            sa.select(*documents.c, _HAS_REFERENCES, _HAS_PROGRESS)
            .where(documents.c.deleted.is_(False))
            .order_by(*_KEY)
        )
        if query.types:
            statement = statement.where(documents.c.type.in_(list(query.types)))
        if query.name_contains:
            statement = statement.where(self._flavour.contains(documents.c.name, query.name_contains))
        for path, expected in rules.parse_extra(query.extra):
            member = documents.c.body[path[0] if len(path) == 1 else path]
            statement = statement.where(member.as_string() == expected)
        if query.cursor:
            after = rules.decode_list_cursor(query.cursor)
            statement = statement.where(
                sa.tuple_(*_KEY) > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        if query.limit is not None:
            statement = statement.limit(query.limit + 1)
        rows = (await self._execute(statement)).all()
        for row in rows:
            self._remember(row)
        await self._apply_progress([(row.type, row.name) for row in rows])
        items = []
        for row in rows:
            seen = self._seen[(row.type, row.name)]
            if seen is not None and seen.document is not None:
                items.append(seen.document)
        if query.limit is not None and len(items) > query.limit:
            items = items[: query.limit]
            return Page(items=items, next_cursor=rules.encode_list_cursor(items[-1].type, items[-1].name))
        return Page(items=items)

    # ``builtins.list``: in this class body, ``list`` names the method above.
    async def version(self, *, doc_type: str, name: str) -> tuple[int, int] | None:
        row = (await self._execute(_SELECT_VERSION, _key((doc_type, name)))).first()
        if row is None or row.deleted:
            return None
        return int(row.revision), int(row.progress or 0)

    async def progress(self, *, doc_type: str, name: str) -> builtins.list[ProgressRow]:
        rows = await self._execute(_SELECT_PROGRESS, _key((doc_type, name)))
        return [_progress_row(row) for row in rows]

    async def referrers(self, *, doc_type: str, name: str) -> builtins.list[Referrer]:
        rows = await self._execute(_SELECT_REFERRERS, _key((doc_type, name)))
        return [Referrer(type=r.from_type, name=r.from_name, path=r.path) for r in rows]

    async def history(
        self, *, doc_type: str, name: str, limit: int | None = None, cursor: str | None = None
    ) -> Page[RevisionEntry]:
        rules.check_limit(limit)
        query = (
            sa.select(revisions)
            .where(revisions.c.type == doc_type, revisions.c.name == name)
            .order_by(revisions.c.revision.desc())
        )
        if cursor:
            query = query.where(revisions.c.revision < rules.decode_history_cursor(cursor))
        if limit is not None:
            query = query.limit(limit + 1)
        entries = [self._entry(row) for row in await self._execute(query)]
        if not entries and not await self._ever_existed((doc_type, name)):
            raise errors.DocumentNotFound(doc_type, name)
        if limit is not None and len(entries) > limit:
            entries = entries[:limit]
            return Page(items=entries, next_cursor=rules.encode_history_cursor(entries[-1].revision))
        return Page(items=entries)

    async def revision(self, *, doc_type: str, name: str, revision: int) -> RevisionEntry:
        row = (await self._execute(_SELECT_REVISION, _key((doc_type, name), revision))).first()
        if row is not None:
            return self._entry(row)
        if not await self._ever_existed((doc_type, name)):
            raise errors.DocumentNotFound(doc_type, name)
        raise errors.RevisionNotFound(doc_type, name, revision)

    async def _ever_existed(self, key: Key) -> bool:
        """Whether the key has a row, tombstones included: a deleted document still has a history."""
        return await self._read(key) is not None

    async def count(self, *, doc_type: str) -> int:
        return int((await self._execute(_COUNT, {"key_type": doc_type})).scalar_one())

    # --- host-name counters --------------------------------------------------------------------------------
    async def counters(self, names: Sequence[str]) -> dict[str, int]:
        if not names:
            return {}
        table = counters_table
        statement = sa.select(table.c.name, table.c.next_value).where(table.c.name.in_(sorted(names)))
        if not self._readonly:
            statement = statement.with_for_update()  # held until commit; SQLite serialises writers anyway
        rows = (await self._execute(statement)).all()
        return {str(row.name): int(row.next_value) for row in rows}

    async def set_counters(self, values: Mapping[str, int]) -> None:
        rules.check_writable(self._readonly)
        table = counters_table
        for name, value in sorted(values.items()):
            updated = await self._execute(
                sa.update(table)
                .where(table.c.name == name, table.c.next_value < value)
                .values(next_value=value)
            )
            if updated.rowcount == 0:
                exists = await self._execute(sa.select(table.c.name).where(table.c.name == name))
                if exists.first() is None:  # a concurrent first use of the same counter → conflict, retried
                    await self._execute(sa.insert(table).values(name=name, next_value=value))

    # --- writes ------------------------------------------------------------------------------------------
    async def put(
        self,
        *,
        doc_type: str,
        name: str,
        body: dict[str, Any],
        subject: str,
        action: WriteAction | None = None,
        if_revision: int | None = None,
        create_only: bool = False,
        must_exist: bool = False,
        references: Sequence[Reference] = (),
        task_id: str | None = None,
        restored_from: int | None = None,
    ) -> WriteResult:
        rules.check_writable(self._readonly)
        key = (doc_type, name)
        seen = await self._read(key)
        live = seen.document if seen is not None else None
        current = seen.revision if seen is not None and live is not None else None
        rules.check_write(
            doc_type=doc_type,
            name=name,
            current=current,
            if_revision=if_revision,
            create_only=create_only,
            must_exist=must_exist,
        )
        text = rules.dumps(body)
        folded = seen.progress_read if seen is not None else 0  # progress rows this write holds
        if live is not None and not folded and rules.dumps(live.body) == text:
            return WriteResult(action="unchanged", document=live)
        now = rules.timestamp(self._clock)
        revision = seen.revision + 1 if seen is not None else 1
        document = StoredDocument(
            type=doc_type,
            name=name,
            body=json.loads(text),  # a copy: the caller may go on mutating ``body``
            revision=revision,
            created_at=live.created_at if live is not None else now,
            created_by=live.created_by if live is not None else subject,
            updated_at=now,
            updated_by=subject,
        )
        sealed = self._seal(document.body)  # what the database holds: secret values encrypted
        values = _values(document) | {"body": sealed, "deleted": False}
        del values["progress_seq"]  # not a column: what reads applied
        if seen is None:
            await self._write(key, self._insert_document, values)
        else:
            await self._write(key, _UPDATE_AT_REVISION, _key(key, seen.revision) | _without_key(values))
        action = action or rules.default_action(exists=live is not None)
        await self._append(
            RevisionEntry(doc_type, name, revision, action, now, subject, sealed, task_id, restored_from)
        )
        if seen is not None and seen.has_references:
            await self._execute(_DELETE_REFERENCES, _key(key))
        if refs := rules.unique_references(references):
            rows = [{"from_type": doc_type, "from_name": name} | _values(r) for r in refs]
            await self._execute(_INSERT_REFERENCES, rows)
        if folded:
            await self._execute(_DELETE_PROGRESS_UP_TO, _key(key) | {"key_seq": folded})
        has_progress = seen is not None and seen.has_progress  # rows newer than the read (none in practice)
        self._seen[key] = _Seen(revision, document, has_references=bool(refs), has_progress=has_progress)
        return WriteResult(action="updated" if live is not None else "created", document=document)

    async def delete(
        self,
        *,
        doc_type: str,
        name: str,
        subject: str,
        if_revision: int | None = None,
        task_id: str | None = None,
    ) -> int:
        rules.check_writable(self._readonly)
        key = (doc_type, name)
        seen = await self._read(key)
        current = seen.revision if seen is not None and seen.document is not None else None
        rules.check_delete(doc_type=doc_type, name=name, current=current, if_revision=if_revision)
        assert seen is not None  # noqa: S101 - check_delete raised for an absent row
        now = rules.timestamp(self._clock)
        revision = seen.revision + 1
        tombstone = {
            "revision": revision,
            "body": {},
            "deleted": True,
            "updated_at": now,
            "updated_by": subject,
        }
        await self._write(key, _UPDATE_AT_REVISION, _key(key, seen.revision) | tombstone)
        await self._append(RevisionEntry(doc_type, name, revision, "delete", now, subject, None, task_id))
        if seen.has_references:
            await self._execute(_DELETE_REFERENCES, _key(key))
        if seen.has_progress:
            await self._execute(_DELETE_PROGRESS, _key(key))
        self._seen[key] = _Seen(revision, None, has_references=False)
        return revision

    async def put_progress(self, *, doc_type: str, name: str, key: str, entry: dict[str, Any]) -> int:
        rules.check_writable(self._readonly)
        doc_key = (doc_type, name)
        locked = (await self._execute(_LOCK_REVISION, _key(doc_key))).first()
        if locked is None or locked.deleted:
            raise errors.DocumentNotFound(doc_type, name)
        stored = ProgressRow(
            key=key,
            seq=0,
            revision=int(locked.revision),
            time=rules.timestamp(self._clock),
            entry=json.loads(rules.dumps(entry)),  # a copy: the caller may go on mutating ``entry``
        )
        await self._execute(_DELETE_STEP_PROGRESS, _key(doc_key) | {"key_step": key})
        values = {"type": doc_type, "name": name} | _values(stored)
        del values["seq"]
        inserted = await self._execute(_INSERT_PROGRESS, values)
        seq = int((inserted.inserted_primary_key or (0,))[0])
        seen = self._seen.get(doc_key)
        if seen is not None:  # a later read in this transaction shows the row, as in the memory store
            self._seen[doc_key] = dataclasses.replace(seen, has_progress=True)
            if seen.document is not None and seen.revision == stored.revision:
                self._apply(doc_key, [dataclasses.replace(stored, seq=seq)])
        return seq

    async def _write(self, key: Key, statement: sa.Executable, parameters: dict[str, Any]) -> None:
        """Run a conditional write of one document row; no row written means a concurrent writer won."""
        if (await self._execute(statement, parameters)).rowcount != 1:
            raise errors.RevisionConflict(f"{key[0]} {key[1]!r} was written by a concurrent transaction")

    async def _append(self, entry: RevisionEntry) -> None:
        await self._execute(_INSERT_REVISION, _values(entry))


def _key(key: Key, revision: int | None = None) -> dict[str, Any]:
    """The ``key_*`` parameters of the prebuilt statements."""
    parameters: dict[str, Any] = {"key_type": key[0], "key_name": key[1]}
    if revision is not None:
        parameters["key_revision"] = revision
    return parameters


def _values(item: StoredDocument | RevisionEntry | Reference | ProgressRow) -> dict[str, Any]:
    """The dataclass as column values: its fields are named after the columns."""
    return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}


def _without_key(values: dict[str, Any]) -> dict[str, Any]:
    return {column: value for column, value in values.items() if column not in ("type", "name")}


_DOCUMENT_COLUMNS = tuple(f.name for f in dataclasses.fields(StoredDocument) if f.name != "progress_seq")


def _document(row: sa.Row[Any]) -> StoredDocument:
    return StoredDocument(**{name: getattr(row, name) for name in _DOCUMENT_COLUMNS})


def _progress_row(row: sa.Row[Any]) -> ProgressRow:
    return ProgressRow(key=row.key, seq=int(row.seq), revision=row.revision, time=row.time, entry=row.entry)


def _entry(row: sa.Row[Any]) -> RevisionEntry:
    return RevisionEntry(**row._mapping)
