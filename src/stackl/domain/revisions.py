"""Differences between two revisions of a document: an RFC 6902 patch and a unified diff of the YAML.

Both views are computed from bodies whose secrets are already masked, so a diff never shows a secret value.
"""

import difflib
from typing import Any

import jsonpatch
import yaml

MAX_REVISION = 2**31 - 1  # revisions are INTEGER columns (32 bits on PostgreSQL): a larger one cannot exist


def is_revision_number(text: str) -> bool:
    """Whether ``text`` is a revision number (ASCII digits, 1 to ``MAX_REVISION``), safe to pass to int()."""
    return text.isascii() and text.isdigit() and len(text) <= 10 and 1 <= int(text) <= MAX_REVISION


def json_patch(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The RFC 6902 operations that turn ``before`` into ``after``."""
    ops: list[dict[str, Any]] = jsonpatch.make_patch(before, after).patch
    return ops


def to_yaml(body: dict[str, Any]) -> str:
    """A document as block YAML in its own key order (how the CLI shows and edits documents)."""
    if not body:
        return ""
    text: str = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


def unified_diff(before: dict[str, Any], after: dict[str, Any], *, from_label: str, to_label: str) -> str:
    """A unified diff of the two bodies rendered as YAML; empty when they are equal."""
    lines = difflib.unified_diff(
        to_yaml(before).splitlines(keepends=True),
        to_yaml(after).splitlines(keepends=True),
        fromfile=from_label,
        tofile=to_label,
    )
    return "".join(lines)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
