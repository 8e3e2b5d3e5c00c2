"""Documents: the ten types, validation to a canonical body, and the references between documents.

`validate` is the single entry point for every document that is about to be stored, whatever path it came
through (0.5 endpoints, ``/documents``, bulk apply, restores): it resolves the type, rewrites the accepted
legacy forms (legacy.py), validates the body against the model of its type (configs.py, records.py), checks
the rules that relate several fields, and returns the canonical body: every field present with its default,
fields in spec order, maps in submitted order. Every problem is reported at once, as `InvalidDocument` error
items whose `loc` starts at the document root.

Which maps of a body hold secrets differs per type; `mask_secrets` and `keep_masked_secrets` know them all,
so no caller walks a body looking for secrets. The 0.5-write rule for extension fields is implemented in
extensions.py and offered here too, so that callers talk to one module about documents.
"""

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from stackl import errors
from stackl.domain import configs, extensions, fields, legacy, records, secrets

DOCUMENT_TYPES: tuple[str, ...] = (
    "environment",
    "location",
    "zone",
    "functional_requirement",
    "service",
    "stack_application_template",
    "stack_infrastructure_template",
    "policy_template",
    "stack_instance",
    "snapshot",
)
INFRASTRUCTURE_BASE_TYPES: tuple[str, ...] = ("environment", "location", "zone")
WRITABLE_TYPES: tuple[str, ...] = tuple(t for t in DOCUMENT_TYPES if t not in ("stack_instance", "snapshot"))
"""Types users write directly; stack instances and snapshots are written by STACKL only."""
CATEGORIES: tuple[str, ...] = ("configs", "items", "history")

MODELS: dict[str, type[fields.Document]] = {
    model.doc_type: model
    for model in (
        configs.Environment,
        configs.Location,
        configs.Zone,
        configs.FunctionalRequirement,
        configs.Service,
        configs.StackApplicationTemplate,
        configs.StackInfrastructureTemplate,
        configs.PolicyTemplate,
        records.StackInstance,
        records.Snapshot,
    )
}
CATEGORY_OF: dict[str, str] = {doc_type: MODELS[doc_type].category_name for doc_type in DOCUMENT_TYPES}
EXTENSION_FIELDS: dict[str, tuple[str, ...]] = extensions.EXTENSION_FIELDS

keep_omitted_extensions = extensions.keep_omitted_extensions

ErrorItem = errors.ErrorItem


def _error(loc: list[str | int], msg: str, error_type: str) -> ErrorItem:
    return {"loc": loc, "msg": msg, "type": error_type}


def _invalid(problems: list[ErrorItem]) -> errors.InvalidDocument:
    """The error for `problems`, its detail naming each path from the document root (documents.md §2.8)."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in problems]
    count = f"{len(problems)} error{'s' if len(problems) != 1 else ''}"
    return errors.InvalidDocument(f"{count}: {'; '.join(parts)}", errors=problems)


def _non_string_keys(value: Any, loc: list[str | int]) -> list[ErrorItem]:
    found: list[ErrorItem] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(_error([*loc, str(key)], "keys must be strings", "type"))
            else:
                found.extend(_non_string_keys(item, [*loc, key]))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(_non_string_keys(item, [*loc, index]))
    return found


def _resolve_type(body: Mapping[str, Any], doc_type: str | None, problems: list[ErrorItem]) -> str | None:
    one_of = f"must be one of {', '.join(DOCUMENT_TYPES)}"
    given = body.get("type")
    if doc_type is not None:
        if doc_type not in MODELS:
            problems.append(_error(["type"], one_of, "enum"))
            return None
        if given is not None and given != doc_type:
            problems.append(_error(["type"], f"must be {doc_type}", "enum"))
        return doc_type
    if "type" not in body:
        problems.append(_error(["type"], "field required", "missing"))
    elif given is None:
        problems.append(_error(["type"], "must not be null", "type"))
    elif not isinstance(given, str) or given not in MODELS:
        problems.append(_error(["type"], one_of, "enum"))
    else:
        return str(given)
    return None


def validate(body: object, *, doc_type: str | None = None) -> dict[str, Any]:
    """Validate one submitted document and return its canonical full body.

    Args:
        body: the parsed document (JSON or YAML), as submitted.
        doc_type: the type the endpoint writes; then `type` in the body is optional but must equal it.
            None on generic endpoints (bulk apply): then `type` is required and must be a known type.

    Returns:
        The canonical body: every field present with its default, in spec order; maps in submitted key
        order; legacy forms normalised; integral floats as ints; the canonical `category`; no `metadata`
        and no computed fields (SIT `infrastructure_capabilities`, SI `state` and `task`). A null sent for
        a field of `legacy.KEPT_NULLS` (policy template `outputs`) is validated as the default and kept
        as null.

    Raises:
        errors.InvalidDocument: every problem found, each `{loc, msg, type}` with `loc` from the root.
    """
    try:
        return _validate(body, doc_type)
    except RecursionError:
        raise _invalid([_error([], "nested too deeply", "too_deep")]) from None


def _validate(body: object, doc_type: str | None) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise _invalid([_error([], "must be an object", "type")])
    key_problems = _non_string_keys(body, [])
    if key_problems:
        raise _invalid(key_problems)
    problems: list[ErrorItem] = []
    resolved = _resolve_type(body, doc_type, problems)
    category = body.get("category")
    if category is not None and category not in CATEGORIES:
        problems.append(_error(["category"], f"must be one of {', '.join(CATEGORIES)}", "enum"))
    if resolved is None:
        raise _invalid(problems)

    data = legacy.normalise(resolved, body)
    data["type"], data["category"] = resolved, CATEGORY_OF[resolved]
    if resolved == "snapshot":
        _derive_snapshot_source(data)
    canonical: dict[str, Any] | None = None
    try:
        canonical = legacy.keep_nulls(resolved, data, MODELS[resolved].model_validate(data).canonical())
    except ValidationError as exc:
        problems.extend(fields.translate(exc))
    if resolved in configs.CROSS_CHECKS:
        problems.extend(configs.CROSS_CHECKS[resolved](data))
    if resolved == "snapshot":
        inner = _validate_snapshot_body(data, problems)
        if canonical is not None and inner is not None:
            canonical["snapshot"] = inner
    if problems or canonical is None:
        raise _invalid(problems)
    return canonical


# --- snapshots ----------------------------------------------------------------------------------------------
def _derive_snapshot_source(data: dict[str, Any]) -> None:
    """A 0.5 snapshot has no `source`: it is the document it holds, at an unknown revision."""
    inner = data.get("snapshot")
    if data.get("source") is None and isinstance(inner, Mapping):
        data["source"] = {"type": inner.get("type"), "name": inner.get("name"), "revision": None}


def _validate_snapshot_body(data: Mapping[str, Any], problems: list[ErrorItem]) -> dict[str, Any] | None:
    """The canonical copied body, validated as a document of its source type; None when it is not valid."""
    source_type = _mapping(data.get("source")).get("type")
    inner = data.get("snapshot")
    if not isinstance(inner, Mapping) or source_type not in records.SNAPSHOT_SOURCE_TYPES:
        return None  # the snapshot model reports the missing or malformed part
    if inner.get("type") not in (None, source_type):
        # Checking the copy against the model of another type would only bury this one problem.
        problems.append(_error(["snapshot", "type"], f"must be {source_type}", "enum"))
        return None
    try:
        return _validate(inner, source_type)
    except errors.InvalidDocument as exc:
        problems.extend(_error(["snapshot", *e["loc"]], e["msg"], e["type"]) for e in exc.errors)
        return None


# --- references ---------------------------------------------------------------------------------------------
Reference = tuple[str, str, str]
"""(to_type, to_name, path in the referring document), e.g. ("service", "nginx", "services[0].service")."""


def _policy_references(body: Mapping[str, Any]) -> list[Reference]:
    policies = body.get("policies")
    return (
        [("policy_template", p, f"policies.{p}") for p in policies] if isinstance(policies, Mapping) else []
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(values: Any) -> list[tuple[int, str]]:
    """(index, value) of the string entries of `values`, if it is a list."""
    return [(i, v) for i, v in enumerate(_list(values)) if isinstance(v, str)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def references(body: dict[str, Any]) -> list[Reference]:
    """The documents a canonical body refers to (documents.md §2.7, "Referrers counted").

    SIT → environments, locations, zones; service → FRs and policy templates; SAT → services and policy
    templates; environment/location/zone → policy templates; stack instance → its SIT, its SAT and the
    service of every replica. Aliases inside a SAT are not document references; snapshots count for nothing.

    Returns:
        (to_type, to_name, path) per reference, in document order; a document named twice appears twice,
        with two paths.
    """
    doc_type = body.get("type")
    found: list[Reference] = []
    if doc_type in INFRASTRUCTURE_BASE_TYPES:
        found += _policy_references(body)
    elif doc_type == "service":
        found += [
            ("functional_requirement", fr, f"functional_requirements[{i}]")
            for i, fr in _strings(body.get("functional_requirements"))
        ]
        for i, policy in enumerate(_list(body.get("service_policies"))):
            if isinstance(policy, Mapping) and isinstance(policy.get("name"), str):
                found.append(("policy_template", policy["name"], f"service_policies[{i}].name"))
    elif doc_type == "stack_application_template":
        for i, entry in enumerate(_list(body.get("services"))):
            if isinstance(entry, Mapping) and isinstance(entry.get("service"), str):
                found.append(("service", entry["service"], f"services[{i}].service"))
        found += _policy_references(body)
    elif doc_type == "stack_infrastructure_template":
        for i, target in enumerate(_list(body.get("infrastructure_targets"))):
            for part in INFRASTRUCTURE_BASE_TYPES:
                name = _mapping(target).get(part)
                if isinstance(name, str):
                    found.append((part, name, f"infrastructure_targets[{i}].{part}"))
    elif doc_type == "stack_instance":
        for field in ("stack_infrastructure_template", "stack_application_template"):
            if isinstance(body.get(field), str):
                found.append((field, body[field], field))
        for alias, replicas in _mapping(body.get("services")).items():
            for i, replica in enumerate(_list(replicas)):
                if isinstance(_mapping(replica).get("service"), str):
                    found.append(("service", replica["service"], f"services.{alias}[{i}].service"))
    return found


# --- secrets ------------------------------------------------------------------------------------------------
Path = tuple[str | int, ...]
_SECRETS_FIELD_TYPES = (*INFRASTRUCTURE_BASE_TYPES, "functional_requirement", "service")


def _secret_paths(body: Mapping[str, Any]) -> Iterator[Path]:
    """Where the secrets maps of `body` are, by its type (documents.md §2.5)."""
    doc_type = body.get("type")
    if doc_type in _SECRETS_FIELD_TYPES:
        yield ("secrets",)
    elif doc_type == "stack_instance":
        yield ("instance_secrets",)
        yield from (("service_secrets", alias) for alias in _mapping(body.get("service_secrets")))
        for alias, replicas in _mapping(body.get("services")).items():
            yield from (("services", alias, i, "secrets") for i in range(len(_list(replicas))))
    elif doc_type == "snapshot" and isinstance(body.get("snapshot"), Mapping):
        yield from (("snapshot", *path) for path in _secret_paths(body["snapshot"]))


def _at(body: Any, path: Path) -> Any:
    for part in path:
        if isinstance(part, int):
            body = body[part] if isinstance(body, list) and part < len(body) else None
        else:
            body = body.get(part) if isinstance(body, Mapping) else None
    return body


def _put(body: Any, path: Path, value: Any) -> None:
    _at(body, path[:-1])[path[-1]] = value


def mask_secrets(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of `body` with the value of every secrets map of its type replaced by the mask.

    Masked: environment/location/zone/FR/service `secrets`; stack instance `instance_secrets`, each
    `service_secrets[alias]` and every replica's `secrets`; a snapshot's copied body by its own type.
    """
    result = copy.deepcopy(body)
    for path in list(_secret_paths(result)):
        values = _at(result, path)
        if isinstance(values, Mapping):
            _put(result, path, secrets.mask_map(values))
    return result


def keep_masked_secrets(new: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of `new` in which each secret equal to the mask keeps the stored value of the same key.

    Same places as `mask_secrets`: SI service secrets match by alias, replica secrets by alias and index.
    A masked value without a stored counterpart stays as it is.
    """
    result = copy.deepcopy(new)
    for path in list(_secret_paths(result)):
        values = _at(result, path)
        if isinstance(values, Mapping):
            previous = _at(stored, path) if stored is not None else None
            _put(result, path, secrets.keep_masked(values, previous if isinstance(previous, Mapping) else {}))
    return result
