"""Create/update/plan bodies are validated strictly; a 422 names each field (api.md A.8)."""

import pytest

from stackl import errors
from stackl.domain.instances import parse_request


def locs(exc: errors.InvalidDocument) -> list[list[object]]:
    return [e["loc"] for e in exc.errors]


def test_a_full_create_body() -> None:
    request = parse_request(
        {
            "stack_instance_name": "shop",
            "stack_infrastructure_template": "prod",
            "stack_application_template": "web_shop",
            "params": {"a": 1},
            "replicas": {"web": 2},
            "tags": {"region": "eu"},
            "services": [{"name": "cache", "service": "redis"}],
            "stages": [{"name": "one", "services": ["web"]}],
            "deleted": False,
        },
        operation="create",
    )
    assert request.replicas == {"web": 2}
    assert request.services is not None
    assert request.services[0].service == "redis"


def test_create_requires_the_templates_and_the_name() -> None:
    with pytest.raises(errors.InvalidDocument) as caught:
        parse_request({}, operation="create")
    assert ["body", "stack_instance_name"] in locs(caught.value)
    with pytest.raises(errors.InvalidDocument) as caught:
        parse_request({"stack_instance_name": "shop"}, operation="create")
    assert locs(caught.value) == [
        ["body", "stack_infrastructure_template"],
        ["body", "stack_application_template"],
    ]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"replicas": {"web": -1}}, ["body", "replicas", "web"]),
        ({"replicas": {"web": "2"}}, ["body", "replicas", "web"]),
        ({"params": []}, ["body", "params"]),
        ({"surprise": 1}, ["body", "surprise"]),
        ({"operation": "create"}, ["body", "operation"]),
        ({"stack_instance_name": "bad name!"}, ["body", "stack_instance_name"]),
    ],
)
def test_bad_fields_are_named(body: dict[str, object], loc: list[object]) -> None:
    full = {
        "stack_instance_name": "shop",
        "stack_infrastructure_template": "s",
        "stack_application_template": "a",
    }
    with pytest.raises(errors.InvalidDocument) as caught:
        parse_request({**full, **body}, operation="create")
    assert loc in locs(caught.value)


def test_plan_bodies_may_carry_the_operation() -> None:
    assert (
        parse_request({"stack_instance_name": "shop", "operation": "delete"}, plan=True).operation == "delete"
    )
    with pytest.raises(errors.InvalidDocument):
        parse_request({"stack_instance_name": "shop", "operation": "explode"}, plan=True)


def test_body_must_be_an_object() -> None:
    with pytest.raises(errors.InvalidDocument) as caught:
        parse_request([1, 2])
    assert locs(caught.value) == [["body"]]
