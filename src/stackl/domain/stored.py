"""The plain records the stores hand out: stored documents, their revisions, listings, audit entries, log lines.

They are data, not storage: the API, the schemas and the UI show them, and they must not import the datastore
to do so (the "API and schemas import no datastore" contract in pyproject.toml). So they live here, below every
layer that reads them, as frozen dataclasses with no behaviour. The store ports (``datastore.base``,
``datastore.audit``, ``datastore.agents``) return them and re-export them under their old names, so adapters
and use cases importing them from there keep working.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

HistoryAction = Literal["create", "update", "delete", "restore", "status", "outputs"]


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """The current revision of a document and its metadata.

    ``body`` is the revision's body with the live step progress applied (``domain/step_progress.py``);
    ``progress_seq`` is the highest progress row applied (0: none), so a change of progress, which writes no
    revision, still changes (``revision``, ``progress_seq``).
    """

    type: str
    name: str
    body: dict[str, Any]
    revision: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    progress_seq: int = 0


@dataclass(frozen=True, slots=True)
class RevisionEntry:
    """One entry of a document's history; ``body`` is None for a delete (tombstone)."""

    type: str
    name: str
    revision: int
    action: HistoryAction
    time: datetime
    subject: str
    body: dict[str, Any] | None
    task_id: str | None = None
    restored_from: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A listing of current documents, sorted by (type, name)."""

    types: Sequence[str] = ()
    name_contains: str | None = None
    limit: int | None = None
    cursor: str | None = None
    # Body filters: a dot-separated member path (``source.type``) → the string the body holds there.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited request."""

    id: str
    time: datetime
    subject: str
    role: str
    action: str
    method: str
    path: str
    resource_type: str
    resource_name: str
    status_code: int
    result: str
    request_id: str
    token_id: str | None = None
    revision: int | None = None
    task_id: str | None = None
    remote_addr: str = ""
    user_agent: str = ""
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LogLine:
    """A stored log line of one job attempt."""

    job_id: str
    attempt: int
    seq: int
    time: datetime
    stream: str
    line: str
