"""Normalise the STACKL 0.5 input forms that STACKL still accepts (documents.md §2.3, §2.4).

STACKL 0.5 documents and the released 0.5 client send a few shapes the current model does not store: the
pre-0.3 SAT list of service names, `deleted` on stack instances, computed `infrastructure_capabilities` on
SITs, `time` on snapshots, `null` for "use the default", and every number in a free-form map as a float.
One `null` is kept rather than replaced: a policy template's `outputs` (`KEPT_NULLS`), which 0.5 echoed back.
Rewriting them here, before validation, keeps the document models free of legacy branches and gives every
entry point (0.5 paths, new paths, bulk apply, restores) the same canonical result.

The functions never raise on odd input: anything they do not recognise is passed through unchanged, and the
document models then report it with a precise location.
"""

import json
import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

COMPUTED_FIELDS: dict[str, tuple[str, ...]] = {
    "stack_infrastructure_template": ("infrastructure_capabilities",),
    "stack_instance": ("state", "task"),
}
"""Fields computed on every read: accepted on writes (a read can be sent back) and never stored."""

IGNORED_FIELDS: dict[str, tuple[str, ...]] = {
    "stack_instance": ("deleted",),
    "snapshot": ("time",),
}
"""Legacy fields accepted and ignored: `deleted` is always false, a snapshot's `time` becomes metadata."""

KEPT_NULLS: dict[str, tuple[str, ...]] = {
    "policy_template": ("outputs",),
}
"""Optional fields whose `null` is stored as null and shown as null, 0.5 view included.

STACKL 0.5's policy template model declared ``outputs: List[str] = None``: a template posted with
``outputs: null`` came back with ``null``, and 0.5 API clients compare what they posted with the answer. The
null means what the default (``[]``) means: record every field except ``target``.
"""


def integral_floats_to_int(value: Any) -> Any:
    """A copy of a JSON value with every integral float turned into an int (``2.0`` → ``2``), recursively.

    The 0.5 client sends every number of a free-form map as a float; STACKL stores integral values as
    integers (documents.md §2.3). Booleans, non-integral and non-finite floats are kept as they are.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: integral_floats_to_int(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [integral_floats_to_int(v) for v in value]
    return value


def drop_nulls(data: Mapping[str, Any], optional: Collection[str]) -> dict[str, Any]:
    """A copy of `data` without the keys of `optional` fields whose value is None.

    `null` on an optional document field means "use the default" (0.5 clients wrote ``description: null``).
    Required fields keep their None, so validation reports it; free-form maps are never passed here, so a
    None inside ``params`` stays an ordinary value.
    """
    return {k: v for k, v in data.items() if not (v is None and k in optional)}


def keep_nulls(doc_type: str, body: Mapping[str, Any], canonical: dict[str, Any]) -> dict[str, Any]:
    """`canonical` with the `KEPT_NULLS` fields of `doc_type` set back to None where `body` sent null.

    The document model validates the default in their place (null means "use the default" there too, so
    every other rule still applies); only the stored value remembers that the client sent null.
    """
    for field in KEPT_NULLS.get(doc_type, ()):
        if field in body and body[field] is None:
            canonical[field] = None
    return canonical


def sat_services(services: Any) -> Any:
    """The pre-0.3 SAT form ``services: [web, db]`` as ``[{name: web, service: web}, …]``.

    Entries that are already objects are kept, so a list mixing both forms normalises too.
    """
    if not isinstance(services, list):
        return services
    return [{"name": s, "service": s} if isinstance(s, str) else s for s in services]


def normalise(doc_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The document `body` of `doc_type` with the accepted legacy forms rewritten.

    Drops computed and ignored legacy fields (SIT `infrastructure_capabilities`, SI `deleted`, `state` and
    `task`, snapshot `time`), rewrites the pre-0.3 SAT services list and turns integral floats into ints.
    `metadata` is read-only and dropped on every type.
    """
    dropped = {"metadata", *COMPUTED_FIELDS.get(doc_type, ()), *IGNORED_FIELDS.get(doc_type, ())}
    result: dict[str, Any] = {k: integral_floats_to_int(v) for k, v in body.items() if k not in dropped}
    if doc_type == "stack_application_template" and "services" in result:
        result["services"] = sat_services(result["services"])
    return result


def snapshot_created_at(body: Mapping[str, Any]) -> datetime | None:
    """The creation time a 0.5 snapshot carried as `time` (epoch seconds), or None when it has none.

    documents.md §2.4: the value becomes `metadata.created_at` of the imported snapshot.
    """
    value = body.get("time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def scalar_text(value: Any) -> str:
    """A scalar as the string the 0.5 view shows and tags compare with.

    Strings as they are, booleans as ``true``/``false``, numbers as plain decimal text (never an exponent),
    None as ``""``; anything else as JSON text.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return format(Decimal(repr(value)).normalize(), "f")
    if value is None:
        return ""
    return json_text(value)


def json_text(value: Any) -> str:
    """The JSON text the 0.5 view shows for a non-string value that 0.5 typed as a string.

    One function for both directions: the 0.5 view renders service-policy `inputs` with it, and a 0.5 write
    that sends exactly this text back keeps the stored value (documents.md §2.9).
    """
    return json.dumps(value, ensure_ascii=False)
