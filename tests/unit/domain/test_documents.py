"""Generic behaviour of documents.validate: types, categories, nulls, canonical form, error reporting."""

from typing import Any

import pytest
from tests import factories

from stackl import errors
from stackl.domain import documents


def invalid(body: object, doc_type: str | None = None) -> list[dict[str, Any]]:
    with pytest.raises(errors.InvalidDocument) as caught:
        documents.validate(body, doc_type=doc_type)
    return caught.value.errors


def test_registry() -> None:
    assert len(documents.DOCUMENT_TYPES) == 10
    assert documents.DOCUMENT_TYPES[:8] == documents.WRITABLE_TYPES
    assert "stack_instance" not in documents.WRITABLE_TYPES
    assert "snapshot" not in documents.WRITABLE_TYPES
    assert documents.INFRASTRUCTURE_BASE_TYPES == ("environment", "location", "zone")
    assert documents.CATEGORY_OF == {
        "environment": "configs",
        "location": "configs",
        "zone": "configs",
        "functional_requirement": "configs",
        "service": "items",
        "stack_application_template": "configs",
        "stack_infrastructure_template": "configs",
        "policy_template": "configs",
        "stack_instance": "items",
        "snapshot": "history",
    }


def test_error_example_of_the_spec() -> None:
    """documents.md §2.8: a bad tool and an unknown field give exactly these two errors."""
    body = {
        "name": "vm",
        "type": "functional_requirement",
        "invocation": {"generic": {"tool": "chef", "image": "x"}},
        "colour": "blue",
    }
    with pytest.raises(errors.InvalidDocument) as caught:
        documents.validate(body, doc_type="functional_requirement")
    assert caught.value.errors == [
        {
            "loc": ["invocation", "generic", "tool"],
            "msg": "must be one of ansible, packer, shell, terraform, tofu",
            "type": "enum",
        },
        {"loc": ["colour"], "msg": "unknown field", "type": "extra_forbidden"},
    ]
    assert caught.value.message == (
        "2 errors: invocation.generic.tool: must be one of ansible, packer, shell, terraform, tofu; "
        "colour: unknown field"
    )


@pytest.mark.parametrize("body", ["text", 1, None, [], [{"name": "x"}], True])
def test_a_body_that_is_no_object_fails_at_the_root(body: object) -> None:
    assert invalid(body, "zone") == [{"loc": [], "msg": "must be an object", "type": "type"}]


@pytest.mark.parametrize("doc_type", documents.DOCUMENT_TYPES)
def test_every_factory_document_is_valid_and_canonical_is_stable(doc_type: str) -> None:
    body = factories.document(doc_type)
    canonical = documents.validate(body)
    assert canonical["type"] == doc_type
    assert canonical["category"] == documents.CATEGORY_OF[doc_type]
    assert documents.validate(canonical) == canonical
    assert documents.validate(canonical, doc_type=doc_type) == canonical


@pytest.mark.parametrize("doc_type", documents.DOCUMENT_TYPES)
def test_canonical_body_has_every_field_in_model_order(doc_type: str) -> None:
    canonical = documents.validate(factories.document(doc_type))
    assert list(canonical) == list(documents.MODELS[doc_type].model_fields)


def test_type_is_optional_on_typed_endpoints() -> None:
    body = {k: v for k, v in factories.zone().items() if k not in ("type", "category")}
    canonical = documents.validate(body, doc_type="zone")
    assert (canonical["type"], canonical["category"]) == ("zone", "configs")
    assert list(canonical)[:4] == ["name", "type", "category", "description"]


def test_type_null_on_typed_endpoint_means_the_endpoint_type() -> None:
    assert documents.validate({**factories.zone(), "type": None}, doc_type="zone")["type"] == "zone"


def test_type_must_match_the_endpoint_and_the_rest_is_still_checked() -> None:
    problems = invalid({**factories.zone(), "type": "location", "colour": 1}, "zone")
    assert problems == [
        {"loc": ["type"], "msg": "must be zone", "type": "enum"},
        {"loc": ["colour"], "msg": "unknown field", "type": "extra_forbidden"},
    ]


def test_type_is_required_on_generic_endpoints() -> None:
    body = {k: v for k, v in factories.zone().items() if k != "type"}
    assert invalid(body) == [{"loc": ["type"], "msg": "field required", "type": "missing"}]
    assert invalid({**body, "type": None}) == [{"loc": ["type"], "msg": "must not be null", "type": "type"}]


@pytest.mark.parametrize("given", ["Zone", "zones", "", 3, ["zone"]])
def test_unknown_type(given: object) -> None:
    problems = invalid({**factories.zone(), "type": given})
    assert problems == [
        {"loc": ["type"], "msg": f"must be one of {', '.join(documents.DOCUMENT_TYPES)}", "type": "enum"}
    ]


def test_unknown_endpoint_type() -> None:
    assert invalid(factories.zone(), "zones")[0]["loc"] == ["type"]


def test_wrong_but_valid_category_is_replaced_by_the_canonical_one() -> None:
    """The 0.5 `generate` command wrote services with category configs."""
    assert documents.validate({**factories.service(), "category": "configs"})["category"] == "items"
    assert documents.validate({**factories.zone(), "category": None})["category"] == "configs"


@pytest.mark.parametrize("category", ["config", "Items", "", 1])
def test_invalid_category(category: object) -> None:
    assert invalid({**factories.service(), "category": category}) == [
        {"loc": ["category"], "msg": "must be one of configs, items, history", "type": "enum"}
    ]


def test_metadata_is_accepted_and_ignored() -> None:
    body = {**factories.zone(), "metadata": {"revision": 7, "created_by": "alice"}}
    assert documents.validate(body) == documents.validate(factories.zone())
    assert "metadata" not in documents.validate(body)


def test_null_on_optional_fields_means_the_default() -> None:
    body = {**factories.zone(), "description": None, "outputs": None, "params": None, "tags": None}
    canonical = documents.validate(body)
    assert (canonical["description"], canonical["outputs"], canonical["params"], canonical["tags"]) == (
        "",
        {},
        {},
        {},
    )


def test_policy_template_outputs_null_is_kept_as_sent_and_still_validated() -> None:
    """0.5 echoed `outputs: null` on policy templates; its meaning stays the default (every field)."""
    sent = factories.policy_template(outputs=None, description=None)
    canonical = documents.validate(sent)
    assert canonical["outputs"] is None
    assert canonical["description"] == ""  # other nulls still mean the default
    assert documents.validate(canonical) == canonical  # a stored body validates to itself
    assert documents.validate(factories.policy_template())["outputs"] == []  # absent: the default
    assert invalid(factories.policy_template(outputs="name")) == [
        {"loc": ["outputs"], "msg": "must be a list", "type": "type"}
    ]
    assert invalid({**factories.policy_template(outputs=None), "policy": None})[0]["loc"] == ["policy"]


def test_null_inside_free_form_maps_is_a_value() -> None:
    canonical = documents.validate({**factories.zone(), "params": {"proxy": None}, "outputs": {"x": None}})
    assert canonical["params"] == {"proxy": None}
    assert canonical["outputs"] == {"x": None}


def test_null_on_a_required_field_is_an_error() -> None:
    assert invalid({**factories.zone(), "name": None}) == [
        {"loc": ["name"], "msg": "must not be null", "type": "type"}
    ]


def test_missing_required_field() -> None:
    body = {k: v for k, v in factories.zone().items() if k != "name"}
    assert invalid(body) == [{"loc": ["name"], "msg": "field required", "type": "missing"}]


def test_defaults_are_filled_in() -> None:
    canonical = documents.validate({"name": "dmz", "type": "zone"})
    assert canonical == {
        "name": "dmz",
        "type": "zone",
        "category": "configs",
        "description": "",
        "cloud_provider": "",
        "params": {},
        "secrets": {},
        "resources": {},
        "tags": {},
        "packages": [],
        "policies": {},
        "agent": "",
        "outputs": {},
    }


def test_map_key_order_is_kept_as_submitted() -> None:
    params = {"zeta": 1, "alpha": {"y": 1, "b": 2}, "mid": 3}
    canonical = documents.validate({**factories.zone(), "params": params})
    assert list(canonical["params"]) == ["zeta", "alpha", "mid"]
    assert list(canonical["params"]["alpha"]) == ["y", "b"]


def test_integral_floats_become_ints_and_others_stay() -> None:
    canonical = documents.validate(
        {**factories.zone(), "params": {"instances": 2.0, "ratio": 0.5, "on": True}}
    )
    assert canonical["params"] == {"instances": 2, "ratio": 0.5, "on": True}
    assert type(canonical["params"]["instances"]) is int


def test_typed_numbers_from_the_0_5_client_are_ints() -> None:
    fr = factories.functional_requirement(
        invocation={"generic": {"tool": "ansible", "serial": 5.0, "timeout": 900.0}}
    )
    invocation = documents.validate(fr)["invocation"]["generic"]
    assert (invocation["serial"], invocation["timeout"]) == (5, 900)
    assert type(invocation["serial"]) is int


@pytest.mark.parametrize(
    ("field", "value", "msg"),
    [
        ("description", 3, "must be a string"),
        ("params", [], "must be an object"),
        ("packages", "vm", "must be a list"),
        ("agent", True, "must be a string"),
    ],
)
def test_wrong_types_are_reported_plainly(field: str, value: object, msg: str) -> None:
    assert invalid({**factories.zone(), field: value}) == [{"loc": [field], "msg": msg, "type": "type"}]


def test_no_lax_coercion() -> None:
    fr = factories.functional_requirement(
        invocation={"generic": {"tool": "ansible", "serial": "10", "become": 1}}
    )
    problems = invalid(fr)
    assert {tuple(p["loc"]) for p in problems} == {
        ("invocation", "generic", "serial"),
        ("invocation", "generic", "become"),
    }


def test_every_problem_is_reported_at_once() -> None:
    body = {
        "name": "web.shop",
        "type": "environment",
        "colour": "red",
        "resources": {"memory": "lots"},
        "tags": {"t": {"nested": True}},
        "packages": ["vm", "vm"],
        "policies": {"bad-name": {}},
    }
    problems = invalid(body)
    assert [p["loc"] for p in problems] == [
        ["name"],
        ["resources", "memory"],
        ["tags", "t"],
        ["packages", 1],
        ["policies", "bad-name"],
        ["colour"],
    ]


def test_non_string_keys_are_rejected() -> None:
    problems = invalid({**factories.zone(), "params": {"a": {1: "x"}}})
    assert problems == [{"loc": ["params", "a", "1"], "msg": "keys must be strings", "type": "type"}]


def test_deep_nesting_is_an_invalid_document() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    problems = invalid({**factories.zone(), "params": deep})
    assert problems[0]["type"] == "too_deep"


def test_validate_does_not_modify_its_input() -> None:
    body = factories.stack_application_template(
        services=["web"], policies={"p": [{"service": "web", "n": 1.0}]}
    )
    snapshot = repr(body)
    documents.validate(body)
    assert repr(body) == snapshot


def test_canonical_body_shares_nothing_with_the_input() -> None:
    body = factories.zone(params={"nested": {"a": [1]}})
    canonical = documents.validate(body)
    canonical["params"]["nested"]["a"].append(2)
    assert body["params"]["nested"]["a"] == [1]
