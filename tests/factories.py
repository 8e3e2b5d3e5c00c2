"""Builders of valid documents of every type, for every test in the project.

Each builder returns a new, valid body as a user would submit it (with `type` and `category`), built around
one small consistent estate: environment `production`, location `brussels` and zone `dmz` make the target
`production.brussels.dmz` of SIT `main`; FR `vm` is the one step of service `webserver`, aliased `web` in SAT
`web_shop`; stack instance `shop` runs `web` on that target. A test overrides only the fields it is about:
``factories.service(functional_requirements=["vm", "nginx"])``. Keyword overrides replace whole fields.
"""

from typing import Any

TARGET = "production.brussels.dmz"


def _document(
    doc_type: str, category: str, name: str, fields: dict[str, Any], overrides: dict[str, Any]
) -> dict[str, Any]:
    return {"name": name, "type": doc_type, "category": category, **fields, **overrides}


def environment(name: str = "production", **overrides: Any) -> dict[str, Any]:
    """An environment with parameters, a quantity of each kind and a tag."""
    fields = {
        "description": "Production estate",
        "params": {"dns_domain": "prod.example.com"},
        "resources": {"memory": "512GiB", "cpu": 128},
        "tags": {"environment": "production"},
    }
    return _document("environment", "configs", name, fields, overrides)


def location(name: str = "brussels", **overrides: Any) -> dict[str, Any]:
    """A location with an agent."""
    return _document(
        "location", "configs", name, {"params": {"datacenter": "bru1"}, "agent": "bru-agent"}, overrides
    )


def zone(name: str = "dmz", **overrides: Any) -> dict[str, Any]:
    """A zone with a cloud provider and capacity."""
    fields = {
        "cloud_provider": "vmw",
        "params": {"network": "dmz-vlan-20"},
        "resources": {"memory": "64GiB", "cpu": 16},
        "tags": {"network": "dmz"},
    }
    return _document("zone", "configs", name, fields, overrides)


def invocation(tool: str = "terraform", **overrides: Any) -> dict[str, Any]:
    """One invocation of an FR; a `shell` invocation gets a command unless one is given."""
    body: dict[str, Any] = {"tool": tool, "image": "registry.example.com/automation/vm:1.0"}
    if tool == "shell":
        body["command"] = "./run.sh"
    return {**body, **overrides}


def functional_requirement(name: str = "vm", **overrides: Any) -> dict[str, Any]:
    """An FR with a `generic` terraform invocation."""
    fields = {"params": {"vm_size": "small"}, "invocation": {"generic": invocation()}}
    return _document("functional_requirement", "configs", name, fields, overrides)


def service(name: str = "webserver", **overrides: Any) -> dict[str, Any]:
    """A service running FR `vm`, with resource requirements."""
    fields = {
        "functional_requirements": ["vm"],
        "params": {"http_port": 8080},
        "resource_requirements": {"memory": "2GB", "cpu": "500m"},
    }
    return _document("service", "items", name, fields, overrides)


def stack_application_template(name: str = "web_shop", **overrides: Any) -> dict[str, Any]:
    """A SAT with service `webserver` under alias `web`."""
    return _document(
        "stack_application_template",
        "configs",
        name,
        {"services": [{"name": "web", "service": "webserver"}]},
        overrides,
    )


def stack_infrastructure_template(name: str = "main", **overrides: Any) -> dict[str, Any]:
    """A SIT with the one target `production.brussels.dmz`."""
    fields = {
        "infrastructure_targets": [{"environment": "production", "location": "brussels", "zone": "dmz"}]
    }
    return _document("stack_infrastructure_template", "configs", name, fields, overrides)


def policy_template(name: str = "allowed_registries", **overrides: Any) -> dict[str, Any]:
    """A SIT policy template that never infringes; its `package` follows `name`."""
    fields = {"inputs": [], "policy": f"package {name}\n\ninfringement := set()\n"}
    return _document("policy_template", "configs", name, fields, overrides)


def replica(**overrides: Any) -> dict[str, Any]:
    """Replica 0 of alias `web` on the factory target."""
    body: dict[str, Any] = {
        "infrastructure_target": TARGET,
        "service": "webserver",
        "agent": "bru-agent",
        "cloud_provider": "vmw",
        "provisioning_parameters": {"dns_domain": "prod.example.com"},
        "secrets": {},
        "hosts": [],
        "resources": {"memory": "2GB", "cpu": "500m"},
        "tags": {"environment": "production", "network": "dmz"},
        "opa_outputs": {},
        "outputs": {},
    }
    return {**body, **overrides}


def status_entry(**overrides: Any) -> dict[str, Any]:
    """A READY status of step `web` / `vm` on the factory target."""
    body: dict[str, Any] = {
        "service": "web",
        "functional_requirement": "vm",
        "infrastructure_target": TARGET,
        "status": "READY",
        "error_message": "",
    }
    return {**body, **overrides}


def stack_instance(name: str = "shop", **overrides: Any) -> dict[str, Any]:
    """Instance of `web_shop` on `main`: one replica of `web`, one READY step."""
    fields = {
        "stack_infrastructure_template": "main",
        "stack_application_template": "web_shop",
        "services": {"web": [replica()]},
        "status": [status_entry()],
    }
    return _document("stack_instance", "items", name, fields, overrides)


def snapshot(name: str = "service_webserver_2025-05-01_10h02m11s", **overrides: Any) -> dict[str, Any]:
    """A snapshot of revision 1 of service `webserver`."""
    fields = {
        "description": "snapshot of service webserver revision 1",
        "snapshot": service(),
        "source": {"type": "service", "name": "webserver", "revision": 1},
    }
    return _document("snapshot", "history", name, fields, overrides)


BUILDERS = {
    "environment": environment,
    "location": location,
    "zone": zone,
    "functional_requirement": functional_requirement,
    "service": service,
    "stack_application_template": stack_application_template,
    "stack_infrastructure_template": stack_infrastructure_template,
    "policy_template": policy_template,
    "stack_instance": stack_instance,
    "snapshot": snapshot,
}
"""Document type → builder, for tests parametrised over every type."""


def document(doc_type: str, **overrides: Any) -> dict[str, Any]:
    """A valid document of `doc_type`, with `overrides` (``name=`` included)."""
    return BUILDERS[doc_type](**overrides)
