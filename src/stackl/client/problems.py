"""Problem body → the StacklError subclass the server raised, so callers handle remote errors like local ones.

The server turns every StacklError into an RFC 9457 problem body (spec/api.md §0.4) whose ``code`` names the
class. This module reverses that mapping: ``code`` picks the class, ``detail`` becomes the message, ``errors``
stays a list, and the extra members (``referrers``, ``current_revision``, ``explanation``, ``reasons``,
``task_id``…) become attributes. A body without a known ``code`` (a proxy's HTML page, a plain-text 502, a
FastAPI default error) falls back on the HTTP status. The raw body stays reachable through ``body_of`` so the
CLI can print it as-is with ``-o json``.

Subclass constructors build their own messages from structured arguments (``Referenced(doc_type, name, …)``),
but a remote error already has its message: the server's ``detail``. So every error is rebuilt the same way,
through ``StacklError.__init__``, and then given the attributes its class documents.
"""

import json
from collections.abc import Mapping
from typing import Any

import httpx

from stackl import errors

PROBLEM_ATTRIBUTE = "problem"  # the attribute holding the raw problem body on a rebuilt error
MAX_TEXT_DETAIL = 500  # characters of a non-JSON error body kept as the message

CLASSES_BY_CODE: dict[str, type[errors.StacklError]] = {
    "malformed": errors.Malformed,
    "unauthorized": errors.Unauthenticated,
    "forbidden": errors.Forbidden,
    "not_found": errors.NotFound,
    "method_not_allowed": errors.MethodNotAllowed,
    "already_exists": errors.AlreadyExists,
    "referenced": errors.Referenced,
    "instance_busy": errors.InstanceBusy,
    "conflict": errors.Conflict,
    "precondition_failed": errors.PreconditionFailed,
    "payload_too_large": errors.PayloadTooLarge,
    "unsupported_media_type": errors.UnsupportedMediaType,
    "validation": errors.InvalidDocument,
    "missing_references": errors.MissingReferences,
    "placement_failed": errors.PlacementFailed,
    "policy_error": errors.PolicyError,
    "idempotency_key_reused": errors.IdempotencyKeyReused,
    "unavailable": errors.Unavailable,
    "rate_limited": errors.RateLimited,
    "internal": errors.StacklError,
}

CLASSES_BY_STATUS: dict[int, type[errors.StacklError]] = {
    400: errors.Malformed,
    401: errors.Unauthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    412: errors.PreconditionFailed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.InvalidInput,
    429: errors.RateLimited,
    503: errors.Unavailable,
}

# Extra members of a problem body and the default each takes when the body lacks it, per class that
# documents it, so that `exc.referrers` is always a list on a Referenced, whatever the server sent.
_EXTRA_DEFAULTS: dict[str, Any] = {
    "referrers": list,
    "current_revision": None,
    "explanation": dict,
    "reasons": list,
    "task_id": "",
    "task_kind": "",
    "reason": "",
    "retry_after_s": 1.0,
}
_EXTRAS_OF_CLASS: dict[type[errors.StacklError], tuple[str, ...]] = {
    errors.Referenced: ("referrers",),
    errors.PreconditionFailed: ("current_revision",),
    errors.PlacementFailed: ("explanation",),
    errors.Forbidden: ("reasons",),
    errors.InstanceBusy: ("task_id", "task_kind"),
    errors.RateLimited: ("retry_after_s",),
}


def from_response(status: int, content: bytes, content_type: str = "") -> errors.StacklError:
    """The error an HTTP error response stands for.

    Args:
        status: the HTTP status (4xx or 5xx).
        content: the raw response body.
        content_type: the response's ``Content-Type`` header.

    Returns:
        The matching StacklError subclass instance; its raw body is available through ``body_of``.
    """
    body = _parse_json(content) if _looks_like_json(content, content_type) else None
    if isinstance(body, Mapping):
        return from_problem(status, body)
    text = content.decode("utf-8", errors="replace").strip()
    if len(text) > MAX_TEXT_DETAIL:
        text = text[:MAX_TEXT_DETAIL] + "…"
    reason = httpx.codes.get_reason_phrase(status) or "error"
    detail = f"HTTP {status} {reason}" + (f": {text}" if text else "")
    return _build(CLASSES_BY_STATUS.get(status, errors.StacklError), detail, [], {}, None)


def from_problem(status: int, problem: Mapping[str, Any]) -> errors.StacklError:
    """The error a decoded problem body stands for (``code`` first, else the HTTP status)."""
    code = problem.get("code")
    cls = CLASSES_BY_CODE.get(code) if isinstance(code, str) else None
    if cls is errors.AlreadyExists and status == 422:
        cls = errors.InstanceExists  # the create of a stack instance keeps 0.5's 422 (lifecycle.md §3.11)
    if cls is None:
        cls = CLASSES_BY_STATUS.get(status, errors.StacklError)
    detail, items = _detail_and_errors(status, problem)
    return _build(cls, detail, items, problem, dict(problem))


def body_of(exc: BaseException) -> dict[str, Any] | None:
    """The problem body an error was rebuilt from, or None for a local error or a non-JSON body."""
    body = getattr(exc, PROBLEM_ATTRIBUTE, None)
    return body if isinstance(body, dict) else None


def _build(
    cls: type[errors.StacklError],
    detail: str,
    items: list[errors.ErrorItem],
    members: Mapping[str, Any],
    body: dict[str, Any] | None,
) -> errors.StacklError:
    exc = cls.__new__(cls)
    errors.StacklError.__init__(exc, detail, errors=items)
    for name in _EXTRAS_OF_CLASS.get(cls, ()):
        default = _EXTRA_DEFAULTS[name]
        setattr(exc, name, default() if callable(default) else default)
    for name in _EXTRA_DEFAULTS:
        if name in members:
            setattr(exc, name, members[name])
    if isinstance(exc, errors.MissingReferences):
        exc.missing = [
            (str(e["loc"][1]), str(e["loc"][2]))
            for e in items
            if isinstance(e.get("loc"), list) and len(e["loc"]) == 3 and e["loc"][0] == "references"
        ]
    if isinstance(exc, errors.PolicyError):
        exc.policy = str(members.get("policy", ""))
    setattr(exc, PROBLEM_ATTRIBUTE, body)
    return exc


def _detail_and_errors(status: int, problem: Mapping[str, Any]) -> tuple[str, list[errors.ErrorItem]]:
    """``detail`` and ``errors`` of a problem body, also accepting FastAPI's default ``{"detail": [...]}``."""
    detail = problem.get("detail")
    raw_items = problem.get("errors")
    if isinstance(detail, list) and raw_items is None:
        raw_items, detail = detail, None
    items = [_error_item(e) for e in raw_items] if isinstance(raw_items, list) else []
    if not isinstance(detail, str) or not detail:
        title = problem.get("title")
        if isinstance(title, str) and title:
            detail = title
        elif items:
            detail = f"{len(items)} error{'s' if len(items) != 1 else ''}"
        else:
            detail = f"HTTP {status} {httpx.codes.get_reason_phrase(status) or 'error'}"
    return detail, items


def _error_item(raw: object) -> errors.ErrorItem:
    if not isinstance(raw, Mapping):
        return {"loc": [], "msg": str(raw), "type": ""}
    loc = raw.get("loc")
    return {
        "loc": list(loc) if isinstance(loc, list | tuple) else ([] if loc is None else [loc]),
        "msg": str(raw.get("msg", "")),
        "type": str(raw.get("type", "")),
    }


def _looks_like_json(content: bytes, content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith(("/json", "+json")) or content.lstrip()[:1] in (b"{", b"[")


def _parse_json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
