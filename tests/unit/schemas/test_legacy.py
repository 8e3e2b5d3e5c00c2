"""The 0.5 view (documents.md §2.9): exactly the 0.5 fields, all present, none null, secrets masked."""

from typing import Any

import pytest
from tests import factories

from stackl.domain import documents, targets
from stackl.domain.extensions import EXTENSION_FIELDS
from stackl.domain.secrets import MASK
from stackl.schemas import legacy

SECRET = "s3cr3t-value"


def full(doc_type: str, **overrides: Any) -> dict[str, Any]:
    return documents.validate(factories.document(doc_type, **overrides))


def nulls(value: Any, path: str = "") -> list[str]:
    """Paths of the None values of a view, outside free-form maps (which may hold null as a value)."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("doc_type", documents.DOCUMENT_TYPES)
def test_view_has_exactly_the_0_5_fields_in_order(doc_type: str) -> None:
    view = legacy.to_legacy(full(doc_type))
    assert list(view) == [name for name, _ in legacy.SHAPES[doc_type]]
    assert nulls(view) == []
    assert "metadata" not in view


@pytest.mark.parametrize("doc_type", documents.DOCUMENT_TYPES)
def test_0_5_fields_are_the_full_fields_without_extensions(doc_type: str) -> None:
    """Guards both lists: a full-view field is either a 0.5 field or a declared extension."""
    full_fields = set(documents.MODELS[doc_type].model_fields)
    extensions = set(EXTENSION_FIELDS.get(doc_type, ()))
    zero_five = {name for name, _ in legacy.SHAPES[doc_type]}
    if doc_type == "stack_infrastructure_template":
        zero_five -= {"infrastructure_capabilities"}  # computed on read, not a stored field
    if doc_type == "stack_instance":
        full_fields -= {
            "description"
        }  # description is on every type (§2.1) but not in the 0.5 instance model
    assert zero_five == full_fields - extensions


def test_infrastructure_view_drops_packages_and_masks_secrets() -> None:
    body = full("environment", packages=["vm"], secrets={"vcenter_password": SECRET}, description=None)
    view = legacy.to_legacy(body)
    assert "packages" not in view
    assert view["secrets"] == {"vcenter_password": MASK}
    assert view["description"] == ""
    assert body["secrets"] == {"vcenter_password": SECRET}


def test_functional_requirement_view() -> None:
    invocation = {
        "tool": "shell",
        "command": "./vm.sh",
        "working_directory": "vm",
        "timeout": 900,
        "retries": 2,
        "mock_result": "fail",
        "before_command": None,
    }
    view = legacy.to_legacy(
        full("functional_requirement", invocation={"generic": invocation}, secrets={"k": SECRET})
    )
    assert view["invocation"] == {
        "generic": {
            "tool": "shell",
            "image": "",
            "description": "",
            "before_command": "",
            "playbook_path": "",
            "ansible_role": "",
            "gather_facts": True,
            "serial": 10,
            "connection": "ssh",
            "become": False,
            "wait_for_connection": False,
        }
    }
    assert view["secrets"] == {"k": MASK}
    assert (view["outputs_format"], view["as_group"]) == ("json", False)


def test_service_policy_inputs_are_strings_in_the_view() -> None:
    inputs = {"provider": "aws", "limits": {"cpu": 2}, "flag": True, "count": 3, "nothing": None}
    view = legacy.to_legacy(full("service", service_policies=[{"name": "skip", "inputs": inputs}]))
    assert view["service_policies"] == [
        {
            "name": "skip",
            "inputs": {
                "provider": "aws",
                "limits": '{"cpu": 2}',
                "flag": "true",
                "count": "3",
                "nothing": "null",
            },
        }
    ]


def test_service_policy_text_round_trips_through_a_0_5_write() -> None:
    inputs = {"limits": {"cpu": 2}, "count": 3, "name": "x"}
    stored = full("service", service_policies=[{"name": "skip", "inputs": inputs}])
    view = legacy.to_legacy(stored)
    written = documents.validate(documents.keep_omitted_extensions(view, stored, doc_type="service"))
    assert written == stored


def test_sit_view_with_capabilities() -> None:
    docs = {
        ("environment", "production"): full("environment", secrets={"token": SECRET}, packages=["vm"]),
        ("location", "brussels"): full("location"),
        ("zone", "dmz"): full(
            "zone", tags={"ssd": True, "tier": 1}, resources={"memory": "64GiB", "cpu": 16}
        ),
    }
    sit = full("stack_infrastructure_template")
    capabilities, _ = targets.capabilities(sit, docs)
    view = legacy.to_legacy(sit, capabilities=capabilities)
    assert view["infrastructure_targets"] == [
        {"environment": "production", "location": "brussels", "zone": "dmz"}
    ]
    assert view["infrastructure_capabilities"] == {
        "production.brussels.dmz": {
            "provisioning_parameters": {
                "dns_domain": "prod.example.com",
                "datacenter": "bru1",
                "network": "dmz-vlan-20",
            },
            "cloud_provider": "vmw",
            "secrets": {"token": MASK},
            "resources": {"memory": "64GiB", "cpu": "16"},
            "tags": {"environment": "production", "ssd": "true", "tier": "1"},
            "policies": {},
            "agent": "bru-agent",
        }
    }
    assert capabilities["production.brussels.dmz"]["secrets"] == {"token": SECRET}
    assert nulls(view) == []


def test_sit_view_without_capabilities() -> None:
    assert legacy.to_legacy(full("stack_infrastructure_template"))["infrastructure_capabilities"] == {}


def test_sat_view() -> None:
    view = legacy.to_legacy(
        full(
            "stack_application_template",
            services=["web"],
            policies={"p": [{"service": "web", "n": 1.0}]},
            stages=[{"name": "s", "services": ["web"]}],
        )
    )
    assert view["services"] == [{"name": "web", "service": "web"}]
    assert view["policies"] == {"p": [{"service": "web", "n": 1}]}
    assert view["stages"] == [{"name": "s", "services": ["web"]}]


def test_stack_instance_view() -> None:
    body = full(
        "stack_instance",
        instance_secrets={"api_key": SECRET},
        service_secrets={"web": {"pw": SECRET}},
        services={
            "web": [
                factories.replica(
                    secrets={"s": SECRET}, resources={"cpu": 2, "memory": "2GB"}, tags={"ssd": False}
                )
            ]
        },
        status=[
            factories.status_entry(replica=0, action="create", attempt=1, task_id="01J", error_message=None)
        ],
        groups={"web": [{"host": "web01", "target": "production.brussels.dmz"}]},
        tags={"environment": "production"},
        placement={"evaluated_at": "now"},
        deleted=True,
    )
    view = legacy.to_legacy(body)
    assert SECRET not in repr(view)
    assert view["deleted"] is False
    assert not {"tags", "placement", "state", "task", "metadata", "description"} & set(view)
    assert view["status"] == [
        {
            "service": "web",
            "functional_requirement": "vm",
            "infrastructure_target": "production.brussels.dmz",
            "status": "READY",
            "error_message": "",
        }
    ]
    replica = view["services"]["web"][0]
    assert list(replica) == [name for name, _ in legacy.REPLICA]
    assert replica["resources"] == {"cpu": "2", "memory": "2GB"}
    assert replica["tags"] == {"ssd": "false"}
    assert replica["secrets"] == {"s": MASK}
    assert view["service_secrets"] == {"web": {"pw": MASK}}
    assert view["groups"] == {"web": [{"host": "web01", "target": "production.brussels.dmz"}]}
    assert nulls(view) == []


def test_snapshot_view_shows_the_copy_in_its_0_5_view() -> None:
    body = full("snapshot", snapshot=factories.zone(packages=["vm"], secrets={"k": SECRET}),
                source={"type": "zone", "name": "dmz", "revision": 4})  # fmt: skip
    view = legacy.to_legacy(body)
    assert list(view) == ["name", "type", "category", "description", "snapshot"]
    assert view["snapshot"] == legacy.to_legacy(full("zone", packages=["vm"], secrets={"k": SECRET}))
    assert "packages" not in view["snapshot"]
    assert view["snapshot"]["secrets"] == {"k": MASK}


def test_missing_and_null_fields_get_0_5_defaults() -> None:
    view = legacy.to_legacy({"name": "x", "type": "zone", "params": None, "tags": {"a": None}})
    assert view == {
        "name": "x",
        "type": "zone",
        "category": "",
        "description": "",
        "cloud_provider": "",
        "params": {},
        "secrets": {},
        "resources": {},
        "tags": {"a": None},
        "policies": {},
        "agent": "",
        "outputs": {},
    }


def test_policy_template_outputs_null_is_shown_as_0_5_showed_it() -> None:
    view = legacy.to_legacy(full("policy_template", outputs=None))
    assert list(view) == [name for name, _ in legacy.SHAPES["policy_template"]]
    assert view["outputs"] is None
    assert nulls(view) == [".outputs"]
    assert legacy.to_legacy(full("policy_template"))["outputs"] == []
    source = {"type": "policy_template", "name": "allowed_registries", "revision": 1}
    copied = factories.policy_template(outputs=None)
    snapshot = legacy.to_legacy(full("snapshot", snapshot=copied, source=source))
    assert snapshot["snapshot"]["outputs"] is None


def test_view_is_a_copy() -> None:
    body = full("zone", params={"nested": {"a": 1}})
    view = legacy.to_legacy(body)
    view["params"]["nested"]["a"] = 2
    assert body["params"]["nested"]["a"] == 1


def test_unknown_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not a document type"):
        legacy.to_legacy({"name": "x", "type": "thing"})


def test_view_shares_nothing_with_the_capabilities() -> None:
    capabilities = {"p.b.z": {"provisioning_parameters": {"nested": {"a": 1}}, "policies": {"x": {"y": 1}}}}
    view = legacy.to_legacy(full("stack_infrastructure_template"), capabilities=capabilities)
    view["infrastructure_capabilities"]["p.b.z"]["provisioning_parameters"]["nested"]["a"] = 2
    view["infrastructure_capabilities"]["p.b.z"]["policies"]["x"]["y"] = 2
    assert capabilities == {
        "p.b.z": {"provisioning_parameters": {"nested": {"a": 1}}, "policies": {"x": {"y": 1}}}
    }


def test_defaults_are_fresh_objects() -> None:
    first = legacy.to_legacy({"name": "x", "type": "zone"})
    first["params"]["a"] = 1
    assert legacy.to_legacy({"name": "x", "type": "zone"})["params"] == {}
