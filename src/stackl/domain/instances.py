"""Stack-instance requests: the create, update and plan bodies of api.md A.8 / B.2, validated strictly.

STACKL 0.5 defaulted a missing instance name to ``default_test_instance`` and the templates to ``stackl`` /
``web``, so an empty body created a demo instance; here those fields are required and every field is checked
with the same building blocks as the documents, so a 422 names the field at fault (``replicas.web``). The
request's checks against the documents it names (aliases of the SAT, the order missing references are listed
in) live here too, as pure functions the resolving use case calls.
"""

from typing import Any, Literal

from pydantic import Field, ValidationError

from stackl import errors
from stackl.domain import configs, fields

Operation = Literal["create", "update", "delete"]


MAX_REPLICAS = 10_000  # replicas of one service: far beyond any estate, and a bound placement can iterate


class InstanceRequest(fields.DocumentPart):
    """A create (POST), update (PUT) or plan body; which fields are required depends on the operation."""

    stack_instance_name: fields.DocumentName
    stack_infrastructure_template: fields.DocumentName | None = None
    stack_application_template: fields.DocumentName | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    service_params: dict[fields.Alias, dict[str, Any]] = Field(default_factory=dict)
    service_secrets: dict[fields.Alias, dict[str, Any]] = Field(default_factory=dict)
    tags: fields.Scalars | None = None
    replicas: dict[fields.Alias, int] = Field(default_factory=dict)
    services: list[configs.ApplicationService] | None = None
    stages: list[configs.Stage] = Field(default_factory=list)
    rollback: bool | None = None
    deleted: bool | None = None  # legacy: accepted and ignored
    disable_invocation: bool = False
    force_rerun: bool = False
    operation: Operation | None = None  # plan only


def parse_request(body: object, *, operation: Operation | None = None, plan: bool = False) -> InstanceRequest:
    """Validate a request body; ``operation`` is the endpoint's (None: the plan body says, or it is inferred).

    Raises:
        InvalidDocument: every problem at once, each ``loc`` starting at ``body``.
    """
    if not isinstance(body, dict):
        raise errors.InvalidDocument(
            "the body must be an object",
            errors=[{"loc": ["body"], "msg": "must be an object", "type": "type"}],
        )
    problems: list[errors.ErrorItem] = []
    if not plan and "operation" in body:
        problems.append({"loc": ["body", "operation"], "msg": "unknown field", "type": "extra_forbidden"})
    request: InstanceRequest | None = None
    try:
        request = InstanceRequest.model_validate(body)
    except ValidationError as exc:
        problems.extend({**e, "loc": ["body", *e["loc"]]} for e in fields.translate(exc))
    wanted = operation or (request.operation if request else None)
    if request is not None and wanted == "create":
        for key in ("stack_infrastructure_template", "stack_application_template"):
            if getattr(request, key) is None:
                problems.append({"loc": ["body", key], "msg": "field required", "type": "missing"})
    if request is not None:
        for alias, count in request.replicas.items():
            if count < 0:
                problems.append(
                    {
                        "loc": ["body", "replicas", alias],
                        "msg": "must be 0 or more",
                        "type": "greater_than_equal",
                    }
                )
            elif count > MAX_REPLICAS:
                problems.append(
                    {
                        "loc": ["body", "replicas", alias],
                        "msg": f"must be at most {MAX_REPLICAS}",
                        "type": "less_than_equal",
                    }
                )
    if problems or request is None:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in problems]
        raise errors.InvalidDocument(f"{len(problems)} error(s): {'; '.join(parts)}", errors=problems)
    return request


def alias_problems(
    request: InstanceRequest, sat_aliases: list[str]
) -> tuple[list[str], list[errors.ErrorItem]]:
    """Aliases in order (SAT, then extras) and the request fields naming unknown or clashing aliases."""
    problems: list[errors.ErrorItem] = []
    aliases = list(sat_aliases)
    for index, extra in enumerate(request.services or []):
        if extra.name in aliases:
            problems.append(
                {
                    "loc": ["body", "services", index, "name"],
                    "msg": f"alias {extra.name!r} is already a service of the stack application template",
                    "type": "duplicate",
                }
            )
        else:
            aliases.append(extra.name)
    for field_name in ("service_params", "service_secrets", "replicas"):
        for alias in getattr(request, field_name):
            if alias not in aliases:
                problems.append(
                    {
                        "loc": ["body", field_name, alias],
                        "msg": f"unknown service alias {alias!r}",
                        "type": "alias",
                    }
                )
    return aliases, problems


REFERENCE_ORDER = (  # the order of a MissingReferences list, then by name
    "stack_infrastructure_template",
    "stack_application_template",
    "service",
    "functional_requirement",
    "environment",
    "location",
    "zone",
    "policy_template",
)


def reference_order(key: tuple[str, str]) -> tuple[int, str]:
    """Sort key of a missing (type, name) reference: `REFERENCE_ORDER`, unknown types last."""
    return (REFERENCE_ORDER.index(key[0]) if key[0] in REFERENCE_ORDER else 99, key[1])
