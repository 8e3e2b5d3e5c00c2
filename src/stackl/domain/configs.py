"""Models of the eight document types users write: infrastructure, automation, applications, policies.

Environment, location, zone, functional requirement, service, stack application template (SAT), stack
infrastructure template (SIT) and policy template are written directly, through the 0.5 paths or
``/documents``. Each class declares its fields in the order of its table in documents.md §3 to §8, which is
also the order of the canonical body. Per-field rules (names, quantities, unique lists, ranges) live on the
fields; rules that relate several fields of one document (aliases used by SAT policies and stages,
duplicate SIT targets, the `package` of a policy template) are `CROSS_CHECKS` on the raw body: pydantic runs
a model's own validators only once all its fields are valid, and STACKL reports every problem at once.
"""

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from stackl.domain import fields
from stackl.domain.invocations import Invocation
from stackl.errors import ErrorItem

POLICY_RULES = ("solutions", "infringement", "filter", "allow")
"""Rules a policy template must define at least one of (SAT, SIT, service, authorization policies)."""

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([^\s#]+)", re.MULTILINE)
_RULE_HEAD = re.compile(rf"^[ \t]*(?:default[ \t]+)?(?:{'|'.join(POLICY_RULES)})\b", re.MULTILINE)


def _check_output_path(value: str) -> str:
    if not value or "" in value.split("."):
        raise fields.failure("path", "must be a dot-separated path such as hosts.0")
    return value


OutputPath = Annotated[str, AfterValidator(_check_output_path)]


class InfrastructureBase(fields.Document):
    """Environment, location or zone: one level of the infrastructure model (documents.md §3)."""

    name: fields.InfrastructureName
    cloud_provider: fields.OptionalCloudProvider = ""
    params: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    resources: fields.Quantities = Field(default_factory=dict)
    tags: fields.Scalars = Field(default_factory=dict)
    packages: fields.UniqueStrings = Field(default_factory=list)
    policies: dict[fields.PolicyTemplateName, dict[str, Any]] = Field(default_factory=dict)
    agent: fields.OptionalAgent = ""
    outputs: dict[str, Any] = Field(default_factory=dict)


class Environment(InfrastructureBase):
    """First level of the infrastructure model."""

    doc_type = "environment"
    category_name = "configs"


class Location(InfrastructureBase):
    """Second level of the infrastructure model."""

    doc_type = "location"
    category_name = "configs"


class Zone(InfrastructureBase):
    """Third level of the infrastructure model."""

    doc_type = "zone"
    category_name = "configs"


class FunctionalRequirement(fields.Document):
    """One automation step, with an invocation per cloud provider (documents.md §4)."""

    doc_type = "functional_requirement"
    category_name = "configs"

    name: fields.DocumentName
    invocation: Annotated[dict[fields.CloudProvider, Invocation], Field(min_length=1)]
    params: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, OutputPath] = Field(default_factory=dict)
    outputs_format: str = "json"
    as_group: bool = False

    def canonical(self) -> dict[str, Any]:
        body = super().canonical()
        body["invocation"] = {key: value.canonical() for key, value in self.invocation.items()}
        return body


class ServicePolicy(fields.DocumentPart):
    """A policy template evaluated with rule `filter` for every replica and action of a service."""

    name: fields.PolicyTemplateName
    inputs: dict[str, Any] = Field(default_factory=dict)


class Service(fields.Document):
    """An ordered list of functional requirements and what a replica needs (documents.md §5)."""

    doc_type = "service"
    category_name = "items"

    name: fields.DocumentName
    functional_requirements: fields.UniqueDocumentNames
    params: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    resource_requirements: fields.Quantities = Field(default_factory=dict)
    service_policies: list[ServicePolicy] = Field(default_factory=list)


class ApplicationService(fields.DocumentPart):
    """One service of a SAT under its alias."""

    name: fields.Alias
    service: fields.DocumentName


class Stage(fields.DocumentPart):
    """Aliases deployed together; stages run one after another."""

    name: fields.StageName
    services: list[fields.Alias]


class StackApplicationTemplate(fields.Document):
    """The application: aliased services, SAT policies and stages (documents.md §6)."""

    doc_type = "stack_application_template"
    category_name = "configs"

    name: fields.DocumentName
    services: Annotated[list[ApplicationService], Field(min_length=1)]
    policies: dict[fields.PolicyTemplateName, list[dict[str, Any]]] = Field(default_factory=dict)
    stages: list[Stage] = Field(default_factory=list)


class InfrastructureTarget(fields.DocumentPart):
    """One candidate target ``environment.location.zone`` of a SIT."""

    environment: fields.InfrastructureName
    location: fields.InfrastructureName
    zone: fields.InfrastructureName


class StackInfrastructureTemplate(fields.Document):
    """The candidate targets, in preference order (documents.md §7); capabilities are computed on read."""

    doc_type = "stack_infrastructure_template"
    category_name = "configs"

    name: fields.DocumentName
    infrastructure_targets: Annotated[list[InfrastructureTarget], Field(min_length=1)]


class PolicyTemplate(fields.Document):
    """A Rego policy (documents.md §8); compiled by the policy engine, checked here for its shape only."""

    doc_type = "policy_template"
    category_name = "configs"

    name: fields.PolicyTemplateName
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    policy: str


def check_policy_text(name: str, policy: str) -> list[tuple[str, str]]:
    """Shape problems of a policy template's Rego, as (error type, message); empty when it looks right.

    The source must declare ``package <name>`` and define at least one of the rules of `POLICY_RULES`.
    Whether it compiles is decided later by the policy engine, with line and column.
    """
    problems = []
    packages = _PACKAGE.findall(policy)
    if not packages:
        problems.append(("policy", f'must declare "package {name}"'))
    elif packages[0] != name:
        problems.append(("policy", f'declares package {packages[0]}; must be "package {name}"'))
    if _RULE_HEAD.search(policy) is None:
        problems.append(("policy", f"must define at least one of the rules {', '.join(POLICY_RULES)}"))
    return problems


# --- rules relating several fields, run on the raw body so they are reported with the field errors ----------
def _error(loc: list[str | int], msg: str, error_type: str) -> ErrorItem:
    return {"loc": loc, "msg": msg, "type": error_type}


def _indexed(values: Any) -> list[tuple[int, Any]]:
    return list(enumerate(values)) if isinstance(values, list) else []


def check_application_template(data: Mapping[str, Any]) -> list[ErrorItem]:
    """SAT: aliases unique; policy items and stages name its aliases; stages unique; an alias in one stage."""
    problems: list[ErrorItem] = []
    aliases: list[str] = []
    for index, entry in _indexed(data.get("services")):
        alias = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(alias, str):
            if alias in aliases:
                problems.append(
                    _error(["services", index, "name"], f"duplicate alias {alias!r}", "duplicate")
                )
            aliases.append(alias)
    known = f"must be an alias of this template ({', '.join(aliases) or 'none'})"
    policies = data.get("policies")
    for policy, items in policies.items() if isinstance(policies, Mapping) else ():
        for index, item in _indexed(items):
            loc: list[str | int] = ["policies", policy, index, "service"]
            if not isinstance(item, Mapping):
                continue
            if "service" not in item:
                problems.append(_error(loc, "field required", "missing"))
            elif item["service"] not in aliases:
                problems.append(_error(loc, known, "reference"))
    stage_names: list[str] = []
    staged: dict[str, str] = {}
    for index, stage in _indexed(data.get("stages")):
        if not isinstance(stage, Mapping):
            continue
        name = stage.get("name")
        if isinstance(name, str):
            if name in stage_names:
                problems.append(_error(["stages", index, "name"], f"duplicate stage {name!r}", "duplicate"))
            stage_names.append(name)
        for position, alias in _indexed(stage.get("services")):
            loc = ["stages", index, "services", position]
            if not isinstance(alias, str):
                continue
            if alias not in aliases:
                problems.append(_error(loc, known, "reference"))
            elif alias in staged:
                problems.append(
                    _error(loc, f"alias {alias!r} is already in stage {staged[alias]!r}", "duplicate")
                )
            else:
                staged[alias] = name if isinstance(name, str) else str(index)
    return problems


def check_infrastructure_template(data: Mapping[str, Any]) -> list[ErrorItem]:
    """No target listed twice."""
    problems: list[ErrorItem] = []
    seen: set[tuple[str, ...]] = set()
    for index, target in _indexed(data.get("infrastructure_targets")):
        if not isinstance(target, Mapping):
            continue
        parts = [target.get(part) for part in ("environment", "location", "zone")]
        triple = tuple(part for part in parts if isinstance(part, str))
        if len(triple) == len(parts):
            name = ".".join(triple)
            if triple in seen:
                problems.append(
                    _error(["infrastructure_targets", index], f"duplicate target {name}", "duplicate")
                )
            seen.add(triple)
    return problems


def check_policy_template(data: Mapping[str, Any]) -> list[ErrorItem]:
    """The Rego declares the template's package and one of the rules STACKL evaluates."""
    name, policy = data.get("name"), data.get("policy")
    if not isinstance(name, str) or not isinstance(policy, str):
        return []
    return [_error(["policy"], msg, error_type) for error_type, msg in check_policy_text(name, policy)]


CROSS_CHECKS: dict[str, Callable[[Mapping[str, Any]], list[ErrorItem]]] = {
    "stack_application_template": check_application_template,
    "stack_infrastructure_template": check_infrastructure_template,
    "policy_template": check_policy_template,
}
"""Rules relating several fields of one document, by type; each takes the raw (normalised) body."""
