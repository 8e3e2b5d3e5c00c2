"""Documents: validated, revisioned writes and reads, on behalf of both the 0.5 paths and the new API.

Every write runs in one transaction that reads the stored revision, validates the submitted body, keeps masked
secrets (and, on 0.5 paths, omitted extension fields), records the references and writes conditionally. Losing a
race to a concurrent writer restarts the whole transaction, up to ``ports.write_retries`` times, then 409.
Dangling references are accepted (documents may be applied in any order) and come back as warnings.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from stackl import errors
from stackl.datastore.base import (
    ListQuery,
    Page,
    Reference,
    RevisionEntry,
    StoredDocument,
    Transaction,
    WriteResult,
)
from stackl.domain import documents, revisions, targets
from stackl.usecases import policies as policy_cases
from stackl.usecases.ports import Ports

T = TypeVar("T")

READ_ONLY_TYPES = ("stack_instance", "snapshot")


@dataclass(frozen=True, slots=True)
class Written:
    """The outcome of one document write, with the warnings it raised (dangling references)."""

    result: WriteResult
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AppliedItem:
    """One document of a bulk apply."""

    index: int
    type: str
    name: str
    action: Literal["created", "updated", "unchanged"]
    revision: int
    warnings: list[str]
    patch: list[dict[str, Any]] | None = None


async def in_transaction(ports: Ports, work: Callable[[Transaction], Awaitable[T]]) -> T:
    """Run ``work`` in a write transaction, restarting it when a concurrent writer won the race.

    Raises:
        RevisionConflict: it kept losing for ``ports.write_retries`` attempts.
    """
    for attempt in range(1, ports.write_retries + 1):
        try:
            async with ports.store.transaction() as tx:
                return await work(tx)
        except errors.RevisionConflict:
            if attempt == ports.write_retries:
                raise
            # A little jitter so that writers that just collided do not collide again in lockstep.
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")  # pragma: no cover


def check_writable(doc_type: str) -> None:
    """Refuse raw writes of types that only operations create.

    Raises:
        NotFound: unknown type.
        MethodNotAllowed: stack instances and snapshots.
    """
    check_type(doc_type)
    if doc_type == "stack_instance":
        raise errors.MethodNotAllowed("stack instances are changed through /stack_instances operations only")
    if doc_type == "snapshot":
        raise errors.MethodNotAllowed("snapshots are created and restored through /snapshots")


def check_type(doc_type: str) -> None:
    """Raises NotFound unless ``doc_type`` is a document type."""
    if doc_type not in documents.DOCUMENT_TYPES:
        raise errors.NotFound(f"unknown document type {doc_type!r}")


def _key(raw: Mapping[str, Any], doc_type: str | None) -> tuple[str | None, str | None]:
    t = doc_type or raw.get("type")
    n = raw.get("name")
    return (t if isinstance(t, str) else None), (n if isinstance(n, str) else None)


async def _prepare(
    tx: Transaction, raw: object, *, doc_type: str | None, legacy: bool
) -> tuple[dict[str, Any], StoredDocument | None]:
    """Validate a submitted document against what is stored; return the body to write and the stored one."""
    stored = None
    if isinstance(raw, Mapping):
        t, n = _key(raw, doc_type)
        if t in documents.DOCUMENT_TYPES and n:
            stored = await tx.get(doc_type=t, name=n)
        if legacy and t in documents.DOCUMENT_TYPES:
            raw = documents.keep_omitted_extensions(raw, stored.body if stored else None, doc_type=t)
    body = documents.validate(raw, doc_type=doc_type)
    body = documents.keep_masked_secrets(body, stored.body if stored else None)
    return body, stored


def _references(body: dict[str, Any]) -> list[Reference]:
    return [Reference(to_type=t, to_name=n, path=p) for t, n, p in documents.references(body)]


def references(body: dict[str, Any]) -> list[Reference]:
    """The references a write of the canonical ``body`` records (for writers outside this module)."""
    return _references(body)


async def dangling(tx: Transaction, refs: Sequence[Reference]) -> list[str]:
    """Warnings for references to documents that do not exist (yet)."""
    if not refs:
        return []
    found = await tx.get_many(keys=[(r.to_type, r.to_name) for r in refs])
    return [
        f"{r.path}: {r.to_type} {r.to_name!r} does not exist"
        for r in refs
        if (r.to_type, r.to_name) not in found
    ]


async def write(
    ports: Ports,
    raw: object,
    *,
    subject: str,
    doc_type: str | None = None,
    legacy: bool = False,
    if_revision: int | None = None,
    if_absent: bool = False,
    create_only: bool = False,
    must_exist: bool = False,
    path_name: str | None = None,
) -> Written:
    """Create or replace one configuration document.

    Args:
        ports: open adapters.
        raw: the submitted document (JSON/YAML already parsed).
        subject: who writes.
        doc_type: the endpoint's type; None means ``type`` in the body decides.
        legacy: 0.5 path semantics: omitted extension fields keep their stored values.
        if_revision: ``If-Match``: the write only happens on this current revision.
        if_absent: ``If-None-Match: *``: the write only creates.
        create_only: strict create (409 when it exists).
        must_exist: strict replace (404 when it does not).
        path_name: the name in the URL, which the body must match.

    Raises:
        InvalidDocument, PreconditionFailed, AlreadyExists, DocumentNotFound, MethodNotAllowed, RevisionConflict.
    """
    if doc_type is not None:
        check_writable(doc_type)
    elif isinstance(raw, Mapping) and isinstance(raw.get("type"), str) and raw["type"] in READ_ONLY_TYPES:
        check_writable(raw["type"])
    if isinstance(raw, Mapping) and (doc_type or raw.get("type")) == "policy_template":
        await policy_cases.check_template(ports, raw)  # compiled outside the write transaction

    async def work(tx: Transaction) -> Written:
        body, stored = await _prepare(tx, raw, doc_type=doc_type, legacy=legacy)
        if path_name is not None and body["name"] != path_name:
            raise errors.InvalidDocument(
                errors=[
                    {
                        "loc": ["name"],
                        "msg": f"must match the name in the path ({path_name!r})",
                        "type": "name",
                    }
                ]
            )
        if if_absent and stored is not None:
            raise errors.PreconditionFailed(
                f"{body['type']} {body['name']!r} already exists", current_revision=stored.revision
            )
        refs = _references(body)
        result = await tx.put(
            doc_type=body["type"],
            name=body["name"],
            body=body,
            subject=subject,
            if_revision=if_revision,
            create_only=create_only,
            must_exist=must_exist,
            references=refs,
        )
        return Written(result, await dangling(tx, refs))

    return await in_transaction(ports, work)


async def patch(
    ports: Ports, doc_type: str, name: str, merge: object, *, subject: str, if_revision: int | None = None
) -> Written:
    """Apply a JSON merge patch (RFC 7396) to the current document; the result is validated as a whole.

    Raises:
        Malformed: the patch is not an object. InvalidDocument: the result does not validate, or it changes
        ``name`` or ``type``. DocumentNotFound, PreconditionFailed, RevisionConflict.
    """
    check_writable(doc_type)
    if not isinstance(merge, dict):
        raise errors.Malformed("a merge patch must be a JSON object")
    for key in ("name", "type"):
        if key in merge and merge[key] != {"name": name, "type": doc_type}[key]:
            raise errors.InvalidDocument(errors=[{"loc": [key], "msg": "is immutable", "type": "immutable"}])

    async def work(tx: Transaction) -> Written:
        stored = await tx.get(doc_type=doc_type, name=name)
        if stored is None:
            raise errors.DocumentNotFound(doc_type, name)
        current = documents.mask_secrets(stored.body)
        merged = revisions.merge_patch(current, {k: v for k, v in merge.items() if k != "metadata"})
        body = documents.keep_masked_secrets(documents.validate(merged, doc_type=doc_type), stored.body)
        if doc_type == "policy_template":
            await policy_cases.check_template(ports, body)
        refs = _references(body)
        result = await tx.put(
            doc_type=doc_type, name=name, body=body, subject=subject, if_revision=if_revision, references=refs
        )
        return Written(result, await dangling(tx, refs))

    return await in_transaction(ports, work)


async def delete(
    ports: Ports,
    doc_type: str,
    name: str,
    *,
    subject: str,
    force: bool = False,
    if_revision: int | None = None,
) -> list[str]:
    """Delete a document unless other documents refer to it; return warnings (forced deletes).

    Raises:
        DocumentNotFound, Referenced (unless ``force``), PreconditionFailed, MethodNotAllowed.
    """
    check_writable(doc_type)

    async def work(tx: Transaction) -> list[str]:
        if await tx.get(doc_type=doc_type, name=name) is None:
            raise errors.DocumentNotFound(doc_type, name)
        # Snapshots point at their source without depending on it: they outlive it.
        referrers = [r for r in await tx.referrers(doc_type=doc_type, name=name) if r.type != "snapshot"]
        if referrers and not force:
            raise errors.Referenced(
                doc_type, name, [{"type": r.type, "name": r.name, "path": r.path} for r in referrers]
            )
        await tx.delete(doc_type=doc_type, name=name, subject=subject, if_revision=if_revision)
        return [f"{r.type} {r.name!r} keeps a dangling reference at {r.path}" for r in referrers]

    return await in_transaction(ports, work)


async def get(ports: Ports, doc_type: str, name: str, *, revision: int | None = None) -> StoredDocument:
    """The current document, or one of its revisions with the current metadata's timestamps.

    Raises:
        DocumentNotFound, RevisionNotFound (also for a tombstone revision).
    """
    check_type(doc_type)
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=doc_type, name=name)
        current = stored is not None and stored.revision == revision and not stored.progress_seq
        if revision is None or current:  # with live step progress, revision N is the stored one
            if stored is None:
                raise errors.DocumentNotFound(doc_type, name)
            return stored
        entry = await tx.revision(doc_type=doc_type, name=name, revision=revision)
    if entry.body is None:
        raise errors.RevisionNotFound(doc_type, name, revision)
    return StoredDocument(
        type=doc_type,
        name=name,
        body=entry.body,
        revision=entry.revision,
        created_at=stored.created_at if stored else entry.time,
        created_by=stored.created_by if stored else entry.subject,
        updated_at=entry.time,
        updated_by=entry.subject,
    )


async def list_page(ports: Ports, query: ListQuery) -> Page[StoredDocument]:
    """One page of current documents sorted by (type, name)."""
    for t in query.types:
        check_type(t)
    async with ports.store.transaction(readonly=True) as tx:
        return await tx.list(query)


async def list_all(ports: Ports, doc_type: str, *, name_contains: str | None = None) -> list[StoredDocument]:
    """Every current document of one type, sorted by name (the bare arrays of the 0.5 paths)."""
    check_type(doc_type)
    items: list[StoredDocument] = []
    cursor: str | None = None
    async with ports.store.transaction(readonly=True) as tx:
        while True:
            page = await tx.list(
                ListQuery(types=(doc_type,), name_contains=name_contains, limit=1000, cursor=cursor)
            )
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor


async def history(
    ports: Ports, doc_type: str, name: str, *, limit: int | None = None, cursor: str | None = None
) -> Page[RevisionEntry]:
    """The revision history of a document, newest first (tombstones included).

    Raises:
        DocumentNotFound: the document never existed.
    """
    check_type(doc_type)
    async with ports.store.transaction(readonly=True) as tx:
        return await tx.history(doc_type=doc_type, name=name, limit=limit, cursor=cursor)


async def diff(ports: Ports, doc_type: str, name: str, a: int | str, b: int | str) -> dict[str, Any]:
    """The difference between two revisions (numbers or ``latest``), secrets masked.

    Raises:
        DocumentNotFound, RevisionNotFound.
    """
    check_type(doc_type)
    async with ports.store.transaction(readonly=True) as tx:
        bodies: list[dict[str, Any]] = []
        numbers: list[int] = []
        for ref in (a, b):
            if ref == "latest":
                page = await tx.history(doc_type=doc_type, name=name, limit=1)
                entry = page.items[0]
            else:
                entry = await tx.revision(doc_type=doc_type, name=name, revision=int(ref))
            numbers.append(entry.revision)
            bodies.append(documents.mask_secrets(entry.body) if entry.body is not None else {})
    before, after = bodies
    return {
        "from": numbers[0],
        "to": numbers[1],
        "patch": revisions.json_patch(before, after),
        "text": revisions.unified_diff(
            before,
            after,
            from_label=f"{doc_type}/{name}@{numbers[0]}",
            to_label=f"{doc_type}/{name}@{numbers[1]}",
        ),
    }


async def restore(
    ports: Ports, doc_type: str, name: str, revision: int, *, subject: str, if_revision: int | None = None
) -> Written:
    """Write an earlier revision again as a new revision (``action: restore``).

    Raises:
        DocumentNotFound, RevisionNotFound (tombstones cannot be restored), InvalidDocument (the old body no
        longer validates), PreconditionFailed, MethodNotAllowed (stack instances and snapshots).
    """
    check_writable(doc_type)

    async def work(tx: Transaction) -> Written:
        entry = await tx.revision(doc_type=doc_type, name=name, revision=revision)
        if entry.body is None:
            raise errors.RevisionNotFound(doc_type, name, revision)
        return await put_restored(
            tx, entry.body, subject=subject, if_revision=if_revision, restored_from=revision
        )

    return await in_transaction(ports, work)


async def put_restored(
    tx: Transaction,
    old_body: dict[str, Any],
    *,
    subject: str,
    if_revision: int | None,
    restored_from: int | None,
) -> Written:
    """Validate an old body again and write it as a restore; shared by revision and snapshot restores."""
    body = documents.validate(old_body, doc_type=old_body.get("type"))
    refs = _references(body)
    result = await tx.put(
        doc_type=body["type"],
        name=body["name"],
        body=body,
        subject=subject,
        action="restore",
        if_revision=if_revision,
        references=refs,
        restored_from=restored_from,
    )
    return Written(result, await dangling(tx, refs))


async def apply_many(
    ports: Ports, raws: Sequence[object], *, subject: str, dry_run: bool = False, with_patch: bool = False
) -> list[AppliedItem]:
    """Upsert many documents in one transaction, in any order: all of them or none.

    Every document is validated before anything is written; all problems are reported at once with ``loc``
    starting at the document's index. ``dry_run`` computes the same results and writes nothing.

    Raises:
        InvalidDocument: any document is invalid (nothing is written).
    """
    problems: list[errors.ErrorItem] = []
    for index, raw in enumerate(raws):
        t = raw.get("type") if isinstance(raw, Mapping) else None
        if isinstance(t, str) and t in READ_ONLY_TYPES:
            problems.append(
                {"loc": [index, "type"], "msg": f"{t} documents cannot be applied", "type": "enum"}
            )
        elif t == "policy_template" and isinstance(raw, Mapping):
            try:
                await policy_cases.check_template(ports, raw)
            except errors.PolicyError as exc:
                problems.extend({**e, "loc": [index, *e["loc"]]} for e in exc.errors)

    class _Rollback(Exception):
        """Raised inside the transaction to discard a dry run."""

    async def work(tx: Transaction) -> list[AppliedItem]:
        prepared: list[tuple[int, dict[str, Any], StoredDocument | None]] = []
        seen: dict[tuple[str, str], int] = {}
        for index, raw in enumerate(raws):
            try:
                body, stored = await _prepare(tx, raw, doc_type=None, legacy=False)
            except errors.InvalidDocument as exc:
                problems.extend({**e, "loc": [index, *e["loc"]]} for e in exc.errors)
                continue
            key = (body["type"], body["name"])
            if key in seen:
                problems.append(
                    {"loc": [index, "name"], "msg": f"duplicate of document {seen[key]}", "type": "duplicate"}
                )
            seen[key] = index
            prepared.append((index, body, stored))
        if problems:
            raise errors.InvalidDocument(errors=problems)
        items: list[AppliedItem] = []
        all_refs: list[tuple[int, list[Reference]]] = []
        for index, body, stored in prepared:
            refs = _references(body)
            result = await tx.put(
                doc_type=body["type"], name=body["name"], body=body, subject=subject, references=refs
            )
            all_refs.append((index, refs))
            patch_ops = None
            if with_patch or dry_run:
                before = documents.mask_secrets(stored.body) if stored else {}
                patch_ops = revisions.json_patch(before, documents.mask_secrets(body))
            items.append(
                AppliedItem(
                    index=index,
                    type=body["type"],
                    name=body["name"],
                    action=result.action,
                    revision=result.document.revision,
                    warnings=[],
                    patch=patch_ops,
                )
            )
        for item, (_, refs) in zip(items, all_refs, strict=True):
            item.warnings.extend(await dangling(tx, refs))
        if dry_run:
            raise _Rollback(items)
        return items

    try:
        return await in_transaction(ports, work)
    except _Rollback as rollback:
        result: list[AppliedItem] = rollback.args[0]
        return result


async def sit_capabilities(
    ports: Ports, sit_body: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The SIT's infrastructure targets computed from the current environment, location and zone documents."""
    keys: set[tuple[str, str]] = set()
    for entry in sit_body.get("infrastructure_targets", []):
        keys.update(
            {("environment", entry["environment"]), ("location", entry["location"]), ("zone", entry["zone"])}
        )
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=sorted(keys))
    return targets.capabilities(sit_body, {k: v.body for k, v in found.items()})
