"""Every example document of the spec, parsed literally: each must validate (documents.md, lifecycle.md)."""

import json
from typing import Any

import pytest
import yaml
from tests.unit.domain.spec_examples import (
    DOCUMENTS_FUNCTIONAL_REQUIREMENT,
    DOCUMENTS_INFRASTRUCTURE,
    DOCUMENTS_POLICY_TEMPLATE,
    DOCUMENTS_SERVICE,
    DOCUMENTS_SNAPSHOT,
    DOCUMENTS_STACK_APPLICATION_TEMPLATE,
    DOCUMENTS_STACK_INFRASTRUCTURE_TEMPLATE,
    DOCUMENTS_STACK_INSTANCE,
    LIFECYCLE_EXAMPLE_DOCUMENTS,
    LIFECYCLE_STACK_INSTANCE,
    LIFECYCLE_TARGET_DOCUMENTS,
)

from stackl.domain import documents


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


@pytest.mark.parametrize(
    "text",
    [
        DOCUMENTS_INFRASTRUCTURE,
        DOCUMENTS_FUNCTIONAL_REQUIREMENT,
        DOCUMENTS_SERVICE,
        DOCUMENTS_STACK_APPLICATION_TEMPLATE,
        DOCUMENTS_STACK_INFRASTRUCTURE_TEMPLATE,
        DOCUMENTS_POLICY_TEMPLATE,
        DOCUMENTS_STACK_INSTANCE,
        DOCUMENTS_SNAPSHOT,
        LIFECYCLE_TARGET_DOCUMENTS,
        LIFECYCLE_EXAMPLE_DOCUMENTS,
    ],
    ids=[
        "environment-location-zone",
        "functional_requirement",
        "service",
        "stack_application_template",
        "stack_infrastructure_template",
        "policy_template",
        "stack_instance",
        "snapshot",
        "lifecycle-targets",
        "lifecycle-example",
    ],
)
def test_spec_example_validates(text: str) -> None:
    docs = load_all(text)
    assert docs
    for doc in docs:
        canonical = documents.validate(doc)
        assert canonical["name"] == doc["name"]
        assert canonical["type"] == doc["type"]
        assert documents.validate(canonical) == canonical


def test_spec_examples_cover_every_type() -> None:
    texts = [
        DOCUMENTS_INFRASTRUCTURE,
        DOCUMENTS_FUNCTIONAL_REQUIREMENT,
        DOCUMENTS_SERVICE,
        DOCUMENTS_STACK_APPLICATION_TEMPLATE,
        DOCUMENTS_STACK_INFRASTRUCTURE_TEMPLATE,
        DOCUMENTS_POLICY_TEMPLATE,
        DOCUMENTS_STACK_INSTANCE,
        DOCUMENTS_SNAPSHOT,
    ]
    assert {doc["type"] for text in texts for doc in load_all(text)} == set(documents.DOCUMENT_TYPES)


def test_environment_example_keeps_its_values() -> None:
    production = documents.validate(load_all(DOCUMENTS_INFRASTRUCTURE)[0])
    assert production["resources"] == {"memory": "512GiB", "cpu": 128}
    assert production["packages"] == ["vm", "nginx", "postgres"]
    assert production["policies"] == {"allowed_registries": {"prefixes": ["registry.example.com/"]}}


def test_functional_requirement_example_keeps_its_invocations() -> None:
    vm = documents.validate(load_all(DOCUMENTS_FUNCTIONAL_REQUIREMENT)[0])
    assert list(vm["invocation"]) == ["generic", "vmw"]
    assert vm["invocation"]["generic"]["command"] == "./create-vm.sh"
    assert vm["invocation"]["generic"]["timeout"] == 900
    assert (vm["invocation"]["vmw"]["timeout"], vm["invocation"]["vmw"]["retries"]) == (1800, 1)


def test_stack_instance_example_drops_computed_and_read_only_fields() -> None:
    shop = documents.validate(load_all(DOCUMENTS_STACK_INSTANCE)[0])
    assert not {"state", "task", "metadata"} & set(shop)
    assert shop["status"][1]["error_message"] == "timed out after 900 s"
    assert shop["status"][1]["task_id"] is None
    assert shop["placement"]["services"]["web"]["targets"] == ["production.brussels.dmz"]


def test_lifecycle_stack_instance_example_validates() -> None:
    body = json.loads(LIFECYCLE_STACK_INSTANCE)
    canonical = documents.validate(body)
    assert list(canonical["services"]) == ["db", "web"]
    assert canonical["services"]["db"][0]["resources"] == {"cpu": "2", "memory": "16GiB"}
    assert not {"state", "task", "metadata"} & set(canonical)


def test_snapshot_example_holds_the_template() -> None:
    snapshot = documents.validate(load_all(DOCUMENTS_SNAPSHOT)[0])
    assert snapshot["source"] == {"type": "stack_application_template", "name": "web_shop", "revision": 2}
    assert snapshot["snapshot"]["services"] == [
        {"name": "db", "service": "database"},
        {"name": "web", "service": "webserver"},
    ]
