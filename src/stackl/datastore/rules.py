"""The rules every DocumentStore adapter shares, written once so the fake and the SQL adapter cannot drift.

``memory.py`` and ``sql.py`` differ in where rows live, not in what a write means. This module holds the
parts of the contract of ``base.py`` that are pure decisions: the order in which a write's preconditions are
checked and what each raises, the canonical JSON text that is stored and that decides whether a write is a
no-op, the opaque cursors of listings and histories, the references a write records, and the ``extra``
filters of a listing.

Canonical JSON keeps the submitted key order and Unicode (``ensure_ascii=False``) in compact form, so the
text stored is the text compared: two bodies with the same members in another order are *different* bodies,
because key order is significant (spec/documents.md §2.3).
"""

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from stackl import errors
from stackl.datastore.base import Reference, WriteAction
from stackl.domain.clock import Clock

LIST_CURSOR = "d"  # cursor tag of a listing: the last (type, name) of the page
HISTORY_CURSOR = "r"  # cursor tag of a history: the last revision of the page
PATH_SEPARATOR = "."  # ``extra`` filter keys are member paths such as ``source.type``


def dumps(body: Any) -> str:
    """The canonical JSON text of a body: submitted key order, Unicode kept, no spaces, no NaN.

    Raises:
        ValueError: the body holds NaN or infinity, which JSON cannot carry.
        TypeError: the body holds a value that is not JSON.
    """
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def timestamp(clock: Clock) -> datetime:
    """The clock's current time for a write, in UTC.

    Raises:
        ValueError: the clock returned a naive datetime (a broken Clock adapter).
    """
    moment = clock.now()
    if moment.tzinfo is None:
        raise ValueError("the clock returned a naive datetime; every STACKL time is aware UTC")
    return moment.astimezone(UTC)


def check_write(
    *,
    doc_type: str,
    name: str,
    current: int | None,
    if_revision: int | None,
    create_only: bool,
    must_exist: bool,
) -> None:
    """Check a put's preconditions against the current revision (None: absent or deleted).

    Raises:
        DocumentNotFound: ``must_exist`` and the document does not exist.
        AlreadyExists: ``create_only`` and the document exists.
        PreconditionFailed: ``if_revision`` is given and is not the current revision.
    """
    if must_exist and current is None:
        raise errors.DocumentNotFound(doc_type, name)
    if create_only and current is not None:
        raise errors.AlreadyExists(doc_type, name)
    check_if_revision(doc_type=doc_type, name=name, current=current, if_revision=if_revision)


def check_delete(*, doc_type: str, name: str, current: int | None, if_revision: int | None) -> None:
    """Check a delete's preconditions against the current revision (None: absent or deleted).

    Raises:
        DocumentNotFound: the document does not exist.
        PreconditionFailed: ``if_revision`` is given and is not the current revision.
    """
    if current is None:
        raise errors.DocumentNotFound(doc_type, name)
    check_if_revision(doc_type=doc_type, name=name, current=current, if_revision=if_revision)


def check_if_revision(*, doc_type: str, name: str, current: int | None, if_revision: int | None) -> None:
    """Raises PreconditionFailed unless ``if_revision`` is None or the current revision."""
    if if_revision is not None and if_revision != current:
        found = f"revision {current}" if current is not None else "no current revision"
        raise errors.PreconditionFailed(
            f"{doc_type} {name!r} has {found}, not revision {if_revision}", current_revision=current
        )


def check_writable(readonly: bool) -> None:
    """Refuse a write in a read-only transaction: a programming error, not a user error."""
    if readonly:
        raise RuntimeError("a read-only transaction cannot write; open it with readonly=False")


def default_action(*, exists: bool) -> WriteAction:
    """The history action of a put that names none: ``update`` of a live document, else ``create``."""
    return "update" if exists else "create"


def unique_references(references: Iterable[Reference]) -> list[Reference]:
    """The references to record, without duplicates, in a stable order."""
    return sorted(set(references), key=lambda r: (r.to_type, r.to_name, r.path))


def check_limit(limit: int | None) -> None:
    """Raises Malformed unless ``limit`` is None (everything) or positive."""
    if limit is not None and limit < 1:
        raise errors.Malformed(f"limit must be at least 1, not {limit}")


def encode_list_cursor(doc_type: str, name: str) -> str:
    """The cursor that resumes a listing after (doc_type, name)."""
    return _encode([LIST_CURSOR, doc_type, name])


def decode_list_cursor(cursor: str) -> tuple[str, str]:
    """The (type, name) a listing cursor resumes after.

    Raises:
        Malformed: the cursor is not a listing cursor this store issued.
    """
    value = _decode(cursor)
    if (
        len(value) == 3
        and value[0] == LIST_CURSOR
        and isinstance(value[1], str)
        and isinstance(value[2], str)
    ):
        return value[1], value[2]
    raise errors.Malformed("invalid cursor")


def encode_history_cursor(revision: int) -> str:
    """The cursor that resumes a history (newest first) after ``revision``."""
    return _encode([HISTORY_CURSOR, revision])


def decode_history_cursor(cursor: str) -> int:
    """The revision a history cursor resumes after.

    Raises:
        Malformed: the cursor is not a history cursor this store issued.
    """
    value = _decode(cursor)
    revision = value[1] if len(value) == 2 and value[0] == HISTORY_CURSOR else None
    if isinstance(revision, int) and not isinstance(revision, bool) and revision > 0:
        return revision
    raise errors.Malformed("invalid cursor")


def _encode(value: list[Any]) -> str:
    return base64.urlsafe_b64encode(dumps(value).encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise errors.Malformed("invalid cursor") from exc
    if not isinstance(value, list):
        raise errors.Malformed("invalid cursor")
    return value


def parse_extra(extra: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """The ``extra`` filters of a ListQuery as (member path, expected string) pairs.

    Each key is a dot-separated path of object members (``source.type``); each value is a string that the
    body must hold at that path. All filters must match.

    Raises:
        Malformed: a key is empty or a value is not a string.
    """
    filters = []
    for key, value in extra.items():
        path = tuple(key.split(PATH_SEPARATOR))
        if not all(path):
            raise errors.Malformed(f"invalid filter path {key!r}")
        if not isinstance(value, str):
            raise errors.Malformed(f"filter {key!r} must be a string, not {type(value).__name__}")
        filters.append((path, value))
    return filters


def matches(body: Mapping[str, Any], filters: Iterable[tuple[tuple[str, ...], str]]) -> bool:
    """Whether a body holds every expected string at its path (the fake's evaluation of ``extra``)."""
    for path, expected in filters:
        found: Any = body
        for member in path:
            if not isinstance(found, Mapping) or member not in found:
                return False
            found = found[member]
        if not isinstance(found, str) or found != expected:
            return False
    return True
