"""STACKL 0.5 snapshots: named, immutable copies of one revision of another document.

A snapshot is itself a document (type ``snapshot``) whose ``snapshot`` member holds the copied body and whose
``source`` says what was copied. It records a reference to its source, so the snapshots of a document are found
by an index lookup (exact type and name, which 0.5 got wrong with a prefix match); that reference is not a
dependency: deleting a document keeps its snapshots.
"""

from typing import Any

from stackl import errors
from stackl.datastore.base import Reference, StoredDocument, Transaction
from stackl.domain import documents
from stackl.usecases import documents as document_cases
from stackl.usecases.ports import Ports

SNAPSHOT_TYPE = "snapshot"


async def create(
    ports: Ports,
    doc_type: str,
    name: str,
    *,
    subject: str,
    snapshot_name: str | None = None,
    description: str | None = None,
    revision: int | None = None,
) -> StoredDocument:
    """Copy the current (or a given) revision of a document into a new snapshot.

    Raises:
        InvalidDocument: unknown or unsupported type, bad snapshot name.
        DocumentNotFound / RevisionNotFound: nothing to copy.
        AlreadyExists: a snapshot with the given name exists.
    """
    if doc_type not in documents.DOCUMENT_TYPES or doc_type == SNAPSHOT_TYPE:
        raise errors.InvalidDocument(
            errors=[
                {"loc": ["path", "type_name"], "msg": f"unknown document type {doc_type!r}", "type": "enum"}
            ]
        )

    async def work(tx: Transaction) -> StoredDocument:
        stored = await tx.get(doc_type=doc_type, name=name)
        if stored is None:
            raise errors.DocumentNotFound(doc_type, name)
        body, number = stored.body, stored.revision
        if revision is not None and revision != stored.revision:
            entry = await tx.revision(doc_type=doc_type, name=name, revision=revision)
            if entry.body is None:
                raise errors.RevisionNotFound(doc_type, name, revision)
            body, number = entry.body, entry.revision
        now = ports.clock.now()
        final_name = snapshot_name or await _free_name(tx, f"{doc_type}_{name}_{now:%Y-%m-%d_%Hh%Mm%Ss}")
        snapshot = documents.validate(
            {
                "name": final_name,
                "type": SNAPSHOT_TYPE,
                "description": description or f"snapshot of {doc_type} {name} revision {number}",
                "snapshot": body,
                "source": {"type": doc_type, "name": name, "revision": number},
            },
            doc_type=SNAPSHOT_TYPE,
        )
        result = await tx.put(
            doc_type=SNAPSHOT_TYPE,
            name=final_name,
            body=snapshot,
            subject=subject,
            create_only=True,
            references=[Reference(to_type=doc_type, to_name=name, path="source")],
        )
        return result.document

    return await document_cases.in_transaction(ports, work)


async def _free_name(tx: Transaction, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``… when taken."""
    candidate, n = base, 1
    while await tx.get(doc_type=SNAPSHOT_TYPE, name=candidate) is not None:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


async def get(ports: Ports, name: str) -> StoredDocument:
    """One snapshot.

    Raises:
        DocumentNotFound: no such snapshot.
    """
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=SNAPSHOT_TYPE, name=name)
    if stored is None:
        raise errors.DocumentNotFound(SNAPSHOT_TYPE, name, "Snapshot not found")
    return stored


async def of_document(ports: Ports, doc_type: str, name: str) -> list[StoredDocument]:
    """The snapshots of one document (exact type and name), newest first."""
    async with ports.store.transaction(readonly=True) as tx:
        referrers = await tx.referrers(doc_type=doc_type, name=name)
        keys = [(r.type, r.name) for r in referrers if r.type == SNAPSHOT_TYPE]
        found = await tx.get_many(keys=keys)
    return sorted(found.values(), key=lambda s: (s.created_at, s.name), reverse=True)


async def restore(ports: Ports, name: str, *, subject: str) -> tuple[StoredDocument, document_cases.Written]:
    """Write a snapshot's copy back as a new revision of its source document (``action: restore``).

    Raises:
        DocumentNotFound: no such snapshot. InvalidDocument: the copy no longer validates.
        MethodNotAllowed: stack instance restores run as tasks (lifecycle).
    """

    async def work(tx: Transaction) -> tuple[StoredDocument, document_cases.Written]:
        snap = await tx.get(doc_type=SNAPSHOT_TYPE, name=name)
        if snap is None:
            raise errors.DocumentNotFound(SNAPSHOT_TYPE, name, "Snapshot not found")
        source: dict[str, Any] = snap.body["source"]
        document_cases.check_writable(source["type"])
        written = await document_cases.put_restored(
            tx, snap.body["snapshot"], subject=subject, if_revision=None, restored_from=source.get("revision")
        )
        return snap, written

    return await document_cases.in_transaction(ports, work)


async def latest_of(ports: Ports, doc_type: str, name: str) -> StoredDocument:
    """The newest snapshot of a document.

    Raises:
        DocumentNotFound: the document has no snapshot.
    """
    snaps = await of_document(ports, doc_type, name)
    if not snaps:
        raise errors.DocumentNotFound(SNAPSHOT_TYPE, name, f"no snapshot of {doc_type} {name!r}")
    return snaps[0]


async def delete(ports: Ports, name: str, *, subject: str) -> None:
    """Delete a snapshot.

    Raises:
        DocumentNotFound: no such snapshot.
    """

    async def work(tx: Transaction) -> None:
        if await tx.get(doc_type=SNAPSHOT_TYPE, name=name) is None:
            raise errors.DocumentNotFound(SNAPSHOT_TYPE, name, "Snapshot not found")
        await tx.delete(doc_type=SNAPSHOT_TYPE, name=name, subject=subject)

    await document_cases.in_transaction(ports, work)
