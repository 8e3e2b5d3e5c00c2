"""InMemoryDocumentStore: the DocumentStore fake for unit tests, with the semantics of the SQL adapter.

Committed state lives in plain dicts. A write transaction holds the store's ``asyncio.Lock`` from start to
end (as SQLite's ``BEGIN IMMEDIATE`` does) and writes into its own overlay; the overlay is applied at commit
in one step with no ``await`` inside, so no other task ever sees half a transaction, and a transaction that
raises leaves nothing behind. Read-only transactions take no lock and read committed state, statement by
statement (PostgreSQL's default isolation). Because write transactions are serialised, this store never
raises ``RevisionConflict``; the SQL adapter may, and callers retry either way.

Step progress rows live beside the rows, per key; a write transaction copies the rows of a key it changes
and replaces them at commit, like everything else it writes.

Bodies are kept as canonical JSON text (``rules.dumps``), so each read returns a fresh copy that a caller
may mutate, a body that is not JSON fails here as it would in SQL, and "unchanged" means the same text.
"""

import asyncio
import bisect
import builtins
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from stackl import errors
from stackl.datastore import rules
from stackl.datastore.base import (
    DocumentStore,
    HistoryAction,
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
from stackl.domain.clock import Clock, SystemClock
from stackl.domain.step_progress import ProgressRow, apply_progress

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Row:
    """The latest revision of one key; ``body`` is None for a tombstone."""

    revision: int
    body: str | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """One history entry, body as canonical text."""

    revision: int
    action: HistoryAction
    time: datetime
    subject: str
    body: str | None
    task_id: str | None
    restored_from: int | None


@dataclass(slots=True)
class _State:
    """Committed state: rows (tombstones included), sorted keys, history and both reference indexes."""

    rows: dict[Key, _Row] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    history: dict[Key, list[_Entry]] = field(default_factory=dict)
    refs_from: dict[Key, tuple[Reference, ...]] = field(default_factory=dict)
    refs_to: dict[Key, set[tuple[str, str, str]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    progress: dict[Key, dict[str, ProgressRow]] = field(default_factory=dict)  # by step key
    progress_seq: int = 0  # the last seq given out


class InMemoryDocumentStore(DocumentStore):
    """A DocumentStore in this process's memory; contents vanish with it."""

    kind = "memory"

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._state = _State()
        self._lock = asyncio.Lock()

    def transaction(self, *, readonly: bool = False) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction(readonly=readonly)

    @asynccontextmanager
    async def _transaction(self, *, readonly: bool) -> AsyncIterator[Transaction]:
        if readonly:
            yield MemoryTransaction(self._state, self._clock, readonly=True)
            return
        async with self._lock:
            tx = MemoryTransaction(self._state, self._clock, readonly=False)
            yield tx
            tx.commit()  # not reached when the body raised: the overlay is simply dropped

    async def ping(self) -> None:
        return None


class MemoryTransaction(Transaction):
    """Reads through an overlay of this transaction's writes onto committed state."""

    def __init__(self, state: _State, clock: Clock, *, readonly: bool) -> None:
        self._state, self._clock, self._readonly = state, clock, readonly
        self._rows: dict[Key, _Row] = {}
        self._entries: dict[Key, list[_Entry]] = {}
        self._refs: dict[Key, tuple[Reference, ...]] = {}
        self._counters: dict[str, int] = {}
        self._progress: dict[Key, dict[str, ProgressRow]] = {}  # the keys whose rows this transaction changed
        self._progress_seq = state.progress_seq
        self._read_seq: dict[Key, int] = {}  # per key, the highest progress seq a read of it saw
        self._before_commit: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[], None]] = []

    def on_commit(
        self, *, before: Callable[[], None] | None = None, after: Callable[[], None] | None = None
    ) -> None:
        """Join another fake's work to this transaction: ``before`` may refuse the commit, ``after`` applies."""
        if before is not None:
            self._before_commit.append(before)
        if after is not None:
            self._after_commit.append(after)

    # --- counters (host templating) -----------------------------------------------------------------------
    async def counters(self, names: Sequence[str]) -> dict[str, int]:
        merged = self._state.counters | self._counters
        return {name: merged[name] for name in names if name in merged}

    async def set_counters(self, values: Mapping[str, int]) -> None:
        rules.check_writable(self._readonly)
        self._counters.update(values)

    # --- reads -------------------------------------------------------------------------------------------
    def _row(self, key: Key) -> _Row | None:
        return self._rows.get(key) or self._state.rows.get(key)

    def _progress_rows(self, key: Key) -> dict[str, ProgressRow]:
        return self._progress.get(key) or self._state.progress.get(key) or {}

    def _live(self, key: Key) -> StoredDocument | None:
        row = self._row(key)
        if row is None or row.body is None:
            return None
        document = _document(key, row)
        rows = self._progress_rows(key).values()
        if not rows:
            return document
        applied = apply_progress(document.body, rows, document.revision)
        self._read_seq[key] = max(self._read_seq.get(key, 0), *(r.seq for r in rows))
        return replace(document, progress_seq=applied)

    async def get(self, *, doc_type: str, name: str) -> StoredDocument | None:
        return self._live((doc_type, name))

    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredDocument]:
        found = {}
        for key in dict.fromkeys(keys):
            document = self._live(key)
            if document is not None:
                found[key] = document
        return found

    async def list(self, query: ListQuery) -> Page[StoredDocument]:
        rules.check_limit(query.limit)
        filters = rules.parse_extra(query.extra)
        types = set(query.types)
        keys = self._state.keys
        if any(key not in self._state.rows for key in self._rows):
            keys = sorted(set(keys) | set(self._rows))
        start = bisect.bisect_right(keys, rules.decode_list_cursor(query.cursor)) if query.cursor else 0
        items: list[StoredDocument] = []
        for key in keys[start:]:
            if (types and key[0] not in types) or (query.name_contains and query.name_contains not in key[1]):
                continue
            document = self._live(key)
            if document is None or (filters and not rules.matches(document.body, filters)):
                continue
            if query.limit is not None and len(items) == query.limit:
                last = items[-1]
                return Page(items=items, next_cursor=rules.encode_list_cursor(last.type, last.name))
            items.append(document)
        return Page(items=items)

    # ``builtins.list`` below: in this class body, ``list`` names the method above.
    async def version(self, *, doc_type: str, name: str) -> tuple[int, int] | None:
        row = self._row((doc_type, name))
        if row is None or row.body is None:
            return None
        return row.revision, max((r.seq for r in self._progress_rows((doc_type, name)).values()), default=0)

    async def progress(self, *, doc_type: str, name: str) -> builtins.list[ProgressRow]:
        return sorted(self._progress_rows((doc_type, name)).values(), key=lambda r: r.seq)

    async def referrers(self, *, doc_type: str, name: str) -> builtins.list[Referrer]:
        target = (doc_type, name)
        found = {
            (t, n, path) for t, n, path in self._state.refs_to.get(target, ()) if (t, n) not in self._refs
        }
        for (t, n), refs in self._refs.items():
            found.update((t, n, r.path) for r in refs if (r.to_type, r.to_name) == target)
        return [Referrer(type=t, name=n, path=path) for t, n, path in sorted(found)]

    def _history(self, key: Key) -> builtins.list[_Entry]:
        return self._state.history.get(key, []) + self._entries.get(key, [])

    async def history(
        self, *, doc_type: str, name: str, limit: int | None = None, cursor: str | None = None
    ) -> Page[RevisionEntry]:
        rules.check_limit(limit)
        before = rules.decode_history_cursor(cursor) if cursor else None
        key = (doc_type, name)
        if self._row(key) is None:
            raise errors.DocumentNotFound(doc_type, name)
        newest_first = [e for e in reversed(self._history(key)) if before is None or e.revision < before]
        if limit is not None and len(newest_first) > limit:
            page = newest_first[:limit]
            cursor = rules.encode_history_cursor(page[-1].revision)
            return Page(items=[_entry(key, e) for e in page], next_cursor=cursor)
        return Page(items=[_entry(key, e) for e in newest_first])

    async def revision(self, *, doc_type: str, name: str, revision: int) -> RevisionEntry:
        key = (doc_type, name)
        if self._row(key) is None:
            raise errors.DocumentNotFound(doc_type, name)
        for entry in self._history(key):
            if entry.revision == revision:
                return _entry(key, entry)
        raise errors.RevisionNotFound(doc_type, name, revision)

    async def count(self, *, doc_type: str) -> int:
        keys = set(self._state.rows) | set(self._rows)
        return sum(
            1 for key in keys if key[0] == doc_type and getattr(self._row(key), "body", None) is not None
        )

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
        row = self._row(key)
        live = self._live(key)  # the body as read, progress applied: what this write replaces
        current = row.revision if row is not None and row.body is not None else None
        rules.check_write(
            doc_type=doc_type,
            name=name,
            current=current,
            if_revision=if_revision,
            create_only=create_only,
            must_exist=must_exist,
        )
        text = rules.dumps(body)
        folded = self._read_seq.get(key, 0)  # the progress rows this write holds (its read applied them)
        if live is not None and not folded and rules.dumps(live.body) == text:
            return WriteResult(action="unchanged", document=live)
        if folded:
            rows = self._progress_rows(key)
            self._progress[key] = {k: r for k, r in rows.items() if r.seq > folded}
            del self._read_seq[key]
        now = rules.timestamp(self._clock)
        exists = current is not None
        if row is not None and row.body is not None:
            new = replace(row, revision=row.revision + 1, body=text, updated_at=now, updated_by=subject)
        else:  # new key, or re-creation after a tombstone: the numbering continues
            revision = row.revision + 1 if row is not None else 1
            new = _Row(revision, text, created_at=now, created_by=subject, updated_at=now, updated_by=subject)
        self._rows[key] = new
        entry = _Entry(
            new.revision,
            action or rules.default_action(exists=exists),
            now,
            subject,
            text,
            task_id,
            restored_from,
        )
        self._entries.setdefault(key, []).append(entry)
        self._refs[key] = tuple(rules.unique_references(references))
        return WriteResult(action="updated" if exists else "created", document=_document(key, new))

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
        row = self._row(key)
        current = row.revision if row is not None and row.body is not None else None
        rules.check_delete(doc_type=doc_type, name=name, current=current, if_revision=if_revision)
        assert row is not None  # noqa: S101 - check_delete raised for an absent row
        now = rules.timestamp(self._clock)
        self._rows[key] = replace(
            row, revision=row.revision + 1, body=None, updated_at=now, updated_by=subject
        )
        entry = _Entry(row.revision + 1, "delete", now, subject, None, task_id, None)
        self._entries.setdefault(key, []).append(entry)
        self._refs[key] = ()
        if self._progress_rows(key):
            self._progress[key] = {}
        self._read_seq.pop(key, None)
        return row.revision + 1

    async def put_progress(self, *, doc_type: str, name: str, key: str, entry: dict[str, Any]) -> int:
        rules.check_writable(self._readonly)
        doc_key = (doc_type, name)
        row = self._row(doc_key)
        if row is None or row.body is None:
            raise errors.DocumentNotFound(doc_type, name)
        self._progress_seq += 1
        stored = ProgressRow(
            key=key,
            seq=self._progress_seq,
            revision=row.revision,
            time=rules.timestamp(self._clock),
            entry=json.loads(rules.dumps(entry)),  # a copy, and JSON or an error, as in SQL
        )
        self._progress[doc_key] = {**self._progress_rows(doc_key), key: stored}
        return stored.seq

    def commit(self) -> None:
        """Apply this transaction's writes to the committed state, atomically for the event loop."""
        for check in self._before_commit:
            check()  # raises before anything of the transaction applies
        state = self._state
        for key, row in self._rows.items():
            if key not in state.rows:
                bisect.insort(state.keys, key)
            state.rows[key] = row
        for key, entries in self._entries.items():
            state.history.setdefault(key, []).extend(entries)
        for key, refs in self._refs.items():
            for old in state.refs_from.pop(key, ()):
                state.refs_to[(old.to_type, old.to_name)].discard((key[0], key[1], old.path))
            if refs:
                state.refs_from[key] = refs
            for ref in refs:
                state.refs_to.setdefault((ref.to_type, ref.to_name), set()).add((key[0], key[1], ref.path))
        for name, value in self._counters.items():
            state.counters[name] = max(value, state.counters.get(name, value))
        for key, progress in self._progress.items():
            if progress:
                state.progress[key] = progress
            else:
                state.progress.pop(key, None)
        state.progress_seq = max(state.progress_seq, self._progress_seq)
        for apply in self._after_commit:
            apply()


def _document(key: Key, row: _Row) -> StoredDocument:
    assert row.body is not None  # noqa: S101 - callers pass live rows only
    return StoredDocument(
        type=key[0],
        name=key[1],
        body=json.loads(row.body),
        revision=row.revision,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _entry(key: Key, entry: _Entry) -> RevisionEntry:
    return RevisionEntry(
        type=key[0],
        name=key[1],
        revision=entry.revision,
        action=entry.action,
        time=entry.time,
        subject=entry.subject,
        body=json.loads(entry.body) if entry.body is not None else None,
        task_id=entry.task_id,
        restored_from=entry.restored_from,
    )
