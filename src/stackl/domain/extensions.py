"""Extension fields: what the 0.5 view hides, and how a 0.5 write keeps it (documents.md §2.9).

The released 0.5 client rejects keys its models do not know, so the 0.5 view leaves out every field this
release added. A 0.5 client therefore never sends those fields back, and a read-modify-write through it must
not erase them: on a 0.5-path write, each extension field the body omits keeps its stored value, while a
field that is sent replaces it. The same holds for service-policy `inputs`, which 0.5 typed as strings: the
0.5 view shows a non-string value as JSON text, and that exact text sent back means "unchanged".

These functions work on the raw body, before `documents.validate`, so that what they fill in is validated
like everything else.
"""

import copy
from collections.abc import Mapping
from typing import Any

from stackl.domain import invocations, legacy, records

EXTENSION_FIELDS: dict[str, tuple[str, ...]] = {
    "environment": ("packages",),
    "location": ("packages",),
    "zone": ("packages",),
    "invocation": invocations.EXTENSION_FIELDS,
    "capability": ("packages",),
    "stack_instance": (
        "tags",
        "placement",
        "state",
        "task",
        "extra_services",
        "steps",
        "posted_outputs",
        "rolling_back",
        "rollback_record",
    ),
    "status": records.STATUS_EXTENSION_FIELDS,
    "snapshot": ("source",),
}
"""Fields absent from the 0.5 view, by document type or part (`invocation`, SIT `capability`, SI `status`)."""

_INVOCATION_KEEPS_FOR_ANY_TOOL = tuple(f for f in invocations.EXTENSION_FIELDS if f != "command")


def _with_stored(raw: Mapping[str, Any], stored: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """`raw` plus the stored value of each field of `names` it omits."""
    kept = {name: copy.deepcopy(stored[name]) for name in names if name not in raw and name in stored}
    return {**raw, **kept}


def _invocations(raw: Any, stored: Any) -> Any:
    if not isinstance(raw, Mapping) or not isinstance(stored, Mapping):
        return raw
    result = {}
    for key, invocation in raw.items():
        previous = stored.get(key)
        if isinstance(invocation, Mapping) and isinstance(previous, Mapping):
            names = _INVOCATION_KEEPS_FOR_ANY_TOOL
            # `command` belongs to shell: keeping it after a 0.5 client switched the tool would make the write
            # fail on a field that client cannot see.
            if invocation.get("tool", previous.get("tool")) == "shell":
                names = invocations.EXTENSION_FIELDS
            invocation = _with_stored(invocation, previous, names)
        result[key] = invocation
    return result


def _stored_policy(stored: list[Any], index: int, name: Any) -> Mapping[str, Any] | None:
    """The stored policy a sent one stands for: same name at the same index, else the first one so named."""
    same_place = stored[index] if index < len(stored) else None
    if isinstance(same_place, Mapping) and same_place.get("name") == name:
        return same_place
    return next((p for p in stored if isinstance(p, Mapping) and p.get("name") == name), None)


def _service_policies(raw: Any, stored: Any) -> Any:
    if not isinstance(raw, list) or not isinstance(stored, list):
        return raw
    result = []
    for index, policy in enumerate(raw):
        previous = _stored_policy(stored, index, policy.get("name")) if isinstance(policy, Mapping) else None
        if previous is not None and isinstance(policy.get("inputs"), Mapping):
            old_inputs = previous.get("inputs")
            old_inputs = old_inputs if isinstance(old_inputs, Mapping) else {}
            inputs = {
                key: copy.deepcopy(old_inputs[key]) if _is_text_of(value, old_inputs, key) else value
                for key, value in policy["inputs"].items()
            }
            policy = {**policy, "inputs": inputs}
        result.append(policy)
    return result


def _is_text_of(value: Any, stored: Mapping[str, Any], key: str) -> bool:
    """Whether `value` is the JSON text the 0.5 view showed for the non-string stored value of `key`."""
    if not isinstance(value, str) or key not in stored or isinstance(stored[key], str):
        return False
    return legacy.json_text(stored[key]) == value


def _status_key(entry: Any) -> tuple[str, ...] | None:
    """(alias, FR, target) of a status entry: the step it reports on; None for a malformed entry."""
    if not isinstance(entry, Mapping):
        return None
    parts = [entry.get(f) for f in ("service", "functional_requirement", "infrastructure_target")]
    key = tuple(part for part in parts if isinstance(part, str))
    return key if len(key) == len(parts) else None


def _statuses(raw: Any, stored: Any) -> Any:
    if not isinstance(raw, list) or not isinstance(stored, list):
        return raw
    previous = {key: e for e in stored if (key := _status_key(e)) is not None}
    result = []
    for entry in raw:
        key = _status_key(entry)
        if key is not None and key in previous:
            entry = _with_stored(entry, previous[key], records.STATUS_EXTENSION_FIELDS)
        result.append(entry)
    return result


def keep_omitted_extensions(
    raw: Mapping[str, Any], stored: dict[str, Any] | None, *, doc_type: str
) -> dict[str, Any]:
    """The body of a 0.5-path write with the extension fields it omits taken from the stored body.

    Args:
        raw: the body as the 0.5 client sent it, before validation.
        stored: the current canonical body, or None when the document does not exist yet.
        doc_type: the type being written.

    Returns:
        A new body: environment/location/zone `packages`; per invocation key `command` (shell only),
        `working_directory`, `timeout`, `retries`, `mock_*`; stack-instance `tags` and `placement` and the
        status-entry additions; a snapshot's `source` — each kept when `raw` omits it. Service-policy
        `inputs` values equal to the JSON text of the stored non-string value get that value back.
    """
    result = dict(raw)
    if stored is None:
        return result
    if doc_type in ("environment", "location", "zone"):
        result = _with_stored(result, stored, EXTENSION_FIELDS[doc_type])
    elif doc_type == "functional_requirement" and "invocation" in raw:
        result["invocation"] = _invocations(raw["invocation"], stored.get("invocation"))
    elif doc_type == "service" and "service_policies" in raw:
        result["service_policies"] = _service_policies(
            raw["service_policies"], stored.get("service_policies")
        )
    elif doc_type == "stack_instance":
        result = _with_stored(result, stored, ("tags", "placement"))
        if "status" in raw:
            result["status"] = _statuses(raw["status"], stored.get("status"))
    elif doc_type == "snapshot":
        result = _with_stored(result, stored, ("source",))
    return result
