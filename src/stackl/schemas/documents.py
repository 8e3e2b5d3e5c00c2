"""Wire shapes of documents on the new API: the full view, list summaries, history entries, apply results.

The full view is the stored body with every secret masked plus a read-only ``metadata`` object
(documents.md §2.6); the 0.5 view lives in ``schemas/legacy.py``.
"""

from typing import Any

from stackl.domain import documents
from stackl.domain.clock import rfc3339
from stackl.domain.secrets import mask_map
from stackl.domain.stored import RevisionEntry, StoredDocument


def metadata(stored: StoredDocument) -> dict[str, Any]:
    """The read-only metadata of a document revision."""
    return {
        "revision": stored.revision,
        "created_at": rfc3339(stored.created_at),
        "created_by": stored.created_by,
        "updated_at": rfc3339(stored.updated_at),
        "updated_by": stored.updated_by,
        "deleted": False,
    }


def masked_capabilities(capabilities: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """SIT capabilities with their secrets masked."""
    return {t: {**cap, "secrets": mask_map(cap.get("secrets", {}))} for t, cap in capabilities.items()}


def full_view(
    stored: StoredDocument, *, capabilities: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The full view of a document: body with secrets masked, computed capabilities for SITs, metadata."""
    body = documents.mask_secrets(stored.body)
    if capabilities is not None:
        body["infrastructure_capabilities"] = masked_capabilities(capabilities)
    body["metadata"] = metadata(stored)
    return body


def summary(stored: StoredDocument) -> dict[str, Any]:
    """One row of ``GET /documents``."""
    return {
        "type": stored.type,
        "name": stored.name,
        "category": stored.body.get("category", documents.CATEGORY_OF.get(stored.type, "")),
        "description": stored.body.get("description", ""),
        "metadata": metadata(stored),
    }


def revision_entry(entry: RevisionEntry) -> dict[str, Any]:
    """One row of a document's history."""
    return {
        "revision": entry.revision,
        "action": entry.action,
        "time": rfc3339(entry.time),
        "subject": entry.subject,
        "task_id": entry.task_id,
        "restored_from": entry.restored_from,
    }
