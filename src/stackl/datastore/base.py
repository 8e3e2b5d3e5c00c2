"""The DocumentStore port: typed, revisioned documents in one database.

Documents are keyed by (type, name) and stored as JSON bodies (the canonical full view without ``metadata``;
secret values as given to ``put``). Every write appends a revision: create, update, restore, delete (a
tombstone). Revisions count from 1 per key and are never reused, so re-creating a deleted document continues
the numbering. A write whose body equals the current one is a no-op (``action == "unchanged"``).

Concurrency: every write is conditional on the revision the transaction read. A caller's precondition
(``if_revision``, from ``If-Match``) that does not hold raises ``PreconditionFailed``; losing a race to a
concurrent writer raises ``RevisionConflict``, after which the caller retries its whole transaction.

Step progress (``domain/step_progress.py``): ``put_progress`` stores what a running task changes in one step
of a stack instance as a small row beside the document, with no revision. Reads (``get``, ``get_many``,
``list``) return the body with the live rows applied (``StoredDocument.progress_seq`` the highest applied);
``history`` and ``revision`` return the stored revisions as they are. The next ``put`` of the document holds
what its read applied, so it deletes those rows in the same transaction (a body equal to the current one is
then still a new revision, when rows were applied); ``delete`` deletes all of them.

References: each write records the documents the body refers to (``references``), so ``referrers`` answers
"who points at me" with an index lookup instead of scanning every body.

Adapters: ``memory.InMemoryDocumentStore`` (unit tests), ``sql.SqlDocumentStore`` (SQLite and PostgreSQL).
The contract tests in ``tests/integration/contracts/test_document_store.py`` run against all of them.
"""

import abc
import builtins
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from stackl.domain.step_progress import ProgressRow

# The records live in the domain (the API reads them without importing the datastore); ``X as X`` re-exports
# them here, so the adapters and use cases that import them from this port keep working.
from stackl.domain.stored import HistoryAction as HistoryAction
from stackl.domain.stored import ListQuery as ListQuery
from stackl.domain.stored import Page as Page
from stackl.domain.stored import RevisionEntry as RevisionEntry
from stackl.domain.stored import StoredDocument as StoredDocument

WriteAction = Literal["create", "update", "restore", "status", "outputs"]


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference from one document to another, found at ``path`` in the referring body."""

    to_type: str
    to_name: str
    path: str


@dataclass(frozen=True, slots=True)
class Referrer:
    """A document that refers to another one, and where."""

    type: str
    name: str
    path: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: ``created``, ``updated`` or ``unchanged`` (no new revision), and the result."""

    action: Literal["created", "updated", "unchanged"]
    document: StoredDocument


class Transaction(abc.ABC):
    """One atomic unit of reads and writes. Commit on clean exit of the context, roll back on error."""

    @abc.abstractmethod
    async def get(self, *, doc_type: str, name: str) -> StoredDocument | None:
        """The current revision, or None when the document does not exist (or is deleted).

        In a write transaction the document is held for it until commit (PostgreSQL ``FOR UPDATE``; the
        other adapters serialise writers): concurrent read-modify-writes of one document queue up.
        ``get_many`` takes no such hold: a write based on it may still end in ``RevisionConflict``.
        """

    @abc.abstractmethod
    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredDocument]:
        """The current revisions of several documents at once; missing keys are absent from the result."""

    @abc.abstractmethod
    async def list(self, query: ListQuery) -> Page[StoredDocument]:
        """Current documents matching the query, sorted by (type, name).

        Raises:
            Malformed: the cursor is not one this store issued.
        """

    @abc.abstractmethod
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
        """Create or replace a document; a body equal to the current one writes nothing.

        ``action`` defaults to ``create`` or ``update`` from the current state.

        Raises:
            PreconditionFailed: ``if_revision`` is given and is not the current revision (or the document is
                absent).
            AlreadyExists: ``create_only`` and the document exists.
            DocumentNotFound: ``must_exist`` and the document does not exist.
            RevisionConflict: a concurrent transaction wrote this document first; retry the transaction.
        """

    @abc.abstractmethod
    async def delete(
        self,
        *,
        doc_type: str,
        name: str,
        subject: str,
        if_revision: int | None = None,
        task_id: str | None = None,
    ) -> int:
        """Delete a document (append a tombstone revision) and return that revision number.

        Raises:
            DocumentNotFound: the document does not exist.
            PreconditionFailed: ``if_revision`` is not the current revision.
            RevisionConflict: a concurrent transaction wrote this document first.
        """

    @abc.abstractmethod
    async def put_progress(self, *, doc_type: str, name: str, key: str, entry: dict[str, Any]) -> int:
        """Store a step's progress entry (replacing that step's earlier one) and return its ``seq``.

        The row is written against the document's current revision, which it does not change; reads apply it
        until the next ``put`` of the document holds it. In a write transaction the document is held as by
        ``get``, without reading its body: the cost does not grow with the document.

        Raises:
            DocumentNotFound: the document does not exist (or is deleted).
        """

    @abc.abstractmethod
    async def version(self, *, doc_type: str, name: str) -> tuple[int, int] | None:
        """The document's (revision, highest progress ``seq`` stored or 0), without its body; None if absent.

        Equal versions mean equal ``get`` results: a reader that kept a copy (the task runner, between two
        activations) checks it with two index lookups.
        """

    @abc.abstractmethod
    async def progress(self, *, doc_type: str, name: str) -> builtins.list[ProgressRow]:
        """The stored progress rows of a document, by ``seq`` (those of an older revision included)."""

    # ``builtins.list``: in this class body, ``list`` names the method above, not the type.
    @abc.abstractmethod
    async def referrers(self, *, doc_type: str, name: str) -> builtins.list[Referrer]:
        """Current documents whose recorded references point at (doc_type, name), by (type, name, path)."""

    @abc.abstractmethod
    async def history(
        self, *, doc_type: str, name: str, limit: int | None = None, cursor: str | None = None
    ) -> Page[RevisionEntry]:
        """The revision history, newest first.

        Raises:
            DocumentNotFound: the document never existed.
            Malformed: bad cursor.
        """

    @abc.abstractmethod
    async def revision(self, *, doc_type: str, name: str, revision: int) -> RevisionEntry:
        """One revision of a document (a tombstone has ``body`` None).

        Raises:
            DocumentNotFound: the document never existed.
            RevisionNotFound: no such revision.
        """

    @abc.abstractmethod
    async def count(self, *, doc_type: str) -> int:
        """How many current documents of this type exist."""

    async def counters(self, names: Sequence[str]) -> dict[str, int]:
        """The next values of persistent counters (host templating); a counter never used is absent.

        In a write transaction the counters read are held until commit, like ``get``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no counters")

    async def set_counters(self, values: Mapping[str, int]) -> None:
        """Store the next values of counters (creating them); they only ever grow."""
        raise NotImplementedError(f"{type(self).__name__} has no counters")


class DocumentStore(abc.ABC):
    """The revisioned document datastore; open it with ``async with`` before use."""

    kind: str = "abstract"  # "memory", "sqlite" or "postgresql": shown by /version
    statements: int = 0  # SQL statements this process sent (``/metrics``; a fake sends none)

    @abc.abstractmethod
    def transaction(self, *, readonly: bool = False) -> AbstractAsyncContextManager[Transaction]:
        """A transaction; ``readonly`` ones never take the write lock (SQLite) and must not write.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """Check the database answers and the schema is current.

        Raises:
            StoreUnavailable: it does not.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None
