"""The STACKL 0.5 view of every document type (documents.md §2.9), as the released 0.5 client reads it.

The released ``stackl-cli`` 0.5.1 rejects a key its models do not know and a `null` in a string, map or list
field, and needs every field to print a document. So the view is built from explicit field lists, one per
0.5 model, rather than derived from the current models: a field added to a document later must never leak
into it. Every field is present and non-null (missing strings ``""``, maps ``{}``, lists ``[]``), but for
the one null 0.5 itself echoed to API clients, stored as sent (`legacy.KEPT_NULLS`: a policy template's
`outputs`; the released client's model refuses a null there, so it never sends one); extension
fields and `metadata` are absent; secrets are masked; values that 0.5 typed as string maps (SIT capability
and replica `resources` and `tags`) are rendered as strings, and service-policy `inputs` that are not
strings as JSON text (`legacy.json_text`, which the 0.5 write path also uses to recognise them).
"""

import copy
from collections.abc import Callable, Mapping
from typing import Any

from stackl.domain import documents, legacy, secrets

Shape = tuple[tuple[str, Any], ...]
"""(field, default) pairs of a 0.5 model, in order; the default also stands in for a None."""

_DOCUMENT: Shape = (("name", ""), ("type", ""), ("category", ""), ("description", ""))
INFRASTRUCTURE_BASE: Shape = (
    *_DOCUMENT,
    ("cloud_provider", ""),
    ("params", {}),
    ("secrets", {}),
    ("resources", {}),
    ("tags", {}),
    ("policies", {}),
    ("agent", ""),
    ("outputs", {}),
)
INVOCATION: Shape = (
    ("tool", ""),
    ("image", ""),
    ("description", ""),
    ("before_command", ""),
    ("playbook_path", ""),
    ("ansible_role", ""),
    ("gather_facts", True),
    ("serial", 10),
    ("connection", "ssh"),
    ("become", False),
    ("wait_for_connection", False),
)
FUNCTIONAL_REQUIREMENT: Shape = (
    *_DOCUMENT,
    ("invocation", {}),
    ("params", {}),
    ("secrets", {}),
    ("outputs", {}),
    ("outputs_format", "json"),
    ("as_group", False),
)
SERVICE: Shape = (
    *_DOCUMENT,
    ("functional_requirements", []),
    ("params", {}),
    ("secrets", {}),
    ("resource_requirements", {}),
    ("service_policies", []),
)
SERVICE_POLICY: Shape = (("name", ""), ("inputs", {}))
STACK_APPLICATION_TEMPLATE: Shape = (*_DOCUMENT, ("services", []), ("policies", {}), ("stages", []))
APPLICATION_SERVICE: Shape = (("name", ""), ("service", ""))
STAGE: Shape = (("name", ""), ("services", []))
STACK_INFRASTRUCTURE_TEMPLATE: Shape = (
    *_DOCUMENT,
    ("infrastructure_targets", []),
    ("infrastructure_capabilities", {}),
)
INFRASTRUCTURE_TARGET: Shape = (("environment", ""), ("location", ""), ("zone", ""))
CAPABILITY: Shape = (
    ("provisioning_parameters", {}),
    ("cloud_provider", "generic"),
    ("secrets", {}),
    ("resources", {}),
    ("tags", {}),
    ("policies", {}),
    ("agent", "common"),
)
POLICY_TEMPLATE: Shape = (*_DOCUMENT, ("inputs", []), ("outputs", []), ("policy", ""))
STACK_INSTANCE: Shape = (
    ("name", ""),
    ("type", ""),
    ("category", ""),
    ("stack_infrastructure_template", ""),
    ("stack_application_template", ""),
    ("instance_params", {}),
    ("service_params", {}),
    ("instance_secrets", {}),
    ("service_secrets", {}),
    ("instance_outputs", {}),
    ("services", {}),
    ("groups", {}),
    ("status", []),
    ("stages", []),
    ("deleted", False),
)
REPLICA: Shape = (
    ("infrastructure_target", ""),
    ("service", ""),
    ("agent", "common"),
    ("cloud_provider", "generic"),
    ("provisioning_parameters", {}),
    ("secrets", {}),
    ("hosts", []),
    ("resources", {}),
    ("tags", {}),
    ("opa_outputs", {}),
    ("outputs", {}),
)
HOST_TARGET: Shape = (("host", ""), ("target", ""))
STATUS_ENTRY: Shape = (
    ("service", ""),
    ("functional_requirement", ""),
    ("infrastructure_target", ""),
    ("status", ""),
    ("error_message", ""),
)
SNAPSHOT: Shape = (*_DOCUMENT, ("snapshot", {}))

SHAPES: dict[str, Shape] = {
    "environment": INFRASTRUCTURE_BASE,
    "location": INFRASTRUCTURE_BASE,
    "zone": INFRASTRUCTURE_BASE,
    "functional_requirement": FUNCTIONAL_REQUIREMENT,
    "service": SERVICE,
    "stack_application_template": STACK_APPLICATION_TEMPLATE,
    "stack_infrastructure_template": STACK_INFRASTRUCTURE_TEMPLATE,
    "policy_template": POLICY_TEMPLATE,
    "stack_instance": STACK_INSTANCE,
    "snapshot": SNAPSHOT,
}
"""The 0.5 field set of each document type."""


def pick(body: Any, shape: Shape) -> dict[str, Any]:
    """The fields of `shape` from `body`, in shape order; a missing or None field gets its default."""
    source = body if isinstance(body, Mapping) else {}
    return {
        name: copy.deepcopy(default if source.get(name) is None else source[name]) for name, default in shape
    }


def _each(values: Any, shape: Shape) -> list[dict[str, Any]]:
    return [pick(value, shape) for value in values] if isinstance(values, list) else []


def _by_key(values: Any, render: Callable[[Any], Any]) -> dict[str, Any]:
    return {key: render(value) for key, value in values.items()} if isinstance(values, Mapping) else {}


def _texts(values: Any) -> dict[str, str]:
    """A map whose values 0.5 typed as strings (`Dict[str, str]`), rendered as such."""
    return _by_key(values, legacy.scalar_text)


def _input_texts(values: Any) -> dict[str, str]:
    return _by_key(values, lambda v: v if isinstance(v, str) else legacy.json_text(v))


def _capability(capability: Any) -> dict[str, Any]:
    view = pick(capability, CAPABILITY)
    view["secrets"] = secrets.mask_map(view["secrets"])
    view["resources"], view["tags"] = _texts(view["resources"]), _texts(view["tags"])
    return view


def _replica(replica: Any) -> dict[str, Any]:
    view = pick(replica, REPLICA)
    view["resources"], view["tags"] = _texts(view["resources"]), _texts(view["tags"])
    return view


def _replicas(replicas: Any) -> list[dict[str, Any]]:
    return [_replica(r) for r in replicas] if isinstance(replicas, list) else []


def _service_policy(policy: Any) -> dict[str, Any]:
    view = pick(policy, SERVICE_POLICY)
    view["inputs"] = _input_texts(view["inputs"])
    return view


def to_legacy(
    body: dict[str, Any], *, capabilities: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The 0.5 view of a stored (canonical) document body.

    Args:
        body: the full-view body, secrets in clear or already masked.
        capabilities: for a SIT, its computed targets (`targets.capabilities`), secrets in clear or masked;
            None shows `infrastructure_capabilities: {}`.

    Returns:
        Exactly the 0.5 field set of the body's type, every field present and non-null but for a stored
        null of `legacy.KEPT_NULLS`, secrets masked.

    Raises:
        ValueError: the body's `type` is not a document type.
    """
    doc_type = body.get("type")
    if doc_type not in SHAPES:
        raise ValueError(f"not a document type: {doc_type!r}")
    masked = documents.mask_secrets(body)
    view = pick(masked, SHAPES[doc_type])
    view.update({f: None for f in legacy.KEPT_NULLS.get(doc_type, ()) if f in masked and masked[f] is None})
    if doc_type == "functional_requirement":
        view["invocation"] = _by_key(view["invocation"], lambda inv: pick(inv, INVOCATION))
    elif doc_type == "service":
        policies = view["service_policies"]
        view["service_policies"] = (
            [_service_policy(p) for p in policies] if isinstance(policies, list) else []
        )
    elif doc_type == "stack_application_template":
        view["services"] = _each(view["services"], APPLICATION_SERVICE)
        view["stages"] = _each(view["stages"], STAGE)
    elif doc_type == "stack_infrastructure_template":
        view["infrastructure_targets"] = _each(view["infrastructure_targets"], INFRASTRUCTURE_TARGET)
        view["infrastructure_capabilities"] = _by_key(capabilities or {}, _capability)
    elif doc_type == "stack_instance":
        view["services"] = _by_key(view["services"], _replicas)
        view["groups"] = _by_key(view["groups"], lambda hosts: _each(hosts, HOST_TARGET))
        view["status"] = _each(view["status"], STATUS_ENTRY)
        view["stages"] = _each(view["stages"], STAGE)
        view["deleted"] = False
    elif doc_type == "snapshot":
        inner = view["snapshot"]
        view["snapshot"] = to_legacy(inner) if isinstance(inner, dict) and inner.get("type") in SHAPES else {}
    return view
