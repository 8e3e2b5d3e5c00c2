from datetime import UTC, datetime

import pytest

from stackl.domain import legacy


def test_integral_floats_become_ints_recursively() -> None:
    value = {"a": 2.0, "b": [1.0, 1.5, {"c": -3.0}], "d": True, "e": "2.0", "f": float("inf")}
    result = legacy.integral_floats_to_int(value)
    assert result == {"a": 2, "b": [1, 1.5, {"c": -3}], "d": True, "e": "2.0", "f": float("inf")}
    assert type(result["a"]) is int
    assert type(result["b"][2]["c"]) is int
    assert result["d"] is True


def test_integral_floats_keep_key_order_and_do_not_mutate() -> None:
    value = {"z": 1.0, "a": 2.0}
    result = legacy.integral_floats_to_int(value)
    assert list(result) == ["z", "a"]
    assert value == {"z": 1.0, "a": 2.0}
    assert type(value["z"]) is float


def test_drop_nulls_only_for_optional_fields() -> None:
    data = {"name": None, "description": None, "params": {"x": None}}
    assert legacy.drop_nulls(data, ["description", "params"]) == {"name": None, "params": {"x": None}}


def test_keep_nulls_restores_a_sent_null_of_a_kept_field_only() -> None:
    canonical = {"name": "p", "description": "", "outputs": [], "inputs": []}
    sent = {"name": "p", "description": None, "outputs": None, "inputs": None}
    assert legacy.keep_nulls("policy_template", sent, dict(canonical)) == {**canonical, "outputs": None}
    absent = {"name": "p"}  # an absent field is the default
    assert legacy.keep_nulls("policy_template", absent, dict(canonical)) == canonical
    zone = {"name": "z", "outputs": {}}
    assert legacy.keep_nulls("zone", {"name": "z", "outputs": None}, dict(zone)) == zone  # not a kept field


def test_sat_services_string_list_is_normalised() -> None:
    assert legacy.sat_services(["web", "db"]) == [
        {"name": "web", "service": "web"},
        {"name": "db", "service": "db"},
    ]
    mixed = ["web", {"name": "db", "service": "postgres"}]
    assert legacy.sat_services(mixed) == [
        {"name": "web", "service": "web"},
        {"name": "db", "service": "postgres"},
    ]
    assert legacy.sat_services("web") == "web"


@pytest.mark.parametrize(
    ("doc_type", "dropped"),
    [
        ("stack_infrastructure_template", "infrastructure_capabilities"),
        ("stack_instance", "deleted"),
        ("stack_instance", "state"),
        ("stack_instance", "task"),
        ("snapshot", "time"),
        ("environment", "metadata"),
        ("service", "metadata"),
    ],
)
def test_normalise_drops_computed_and_ignored_fields(doc_type: str, dropped: str) -> None:
    result = legacy.normalise(doc_type, {"name": "x", dropped: {"anything": 1}})
    assert result == {"name": "x"}


def test_normalise_keeps_other_fields_of_other_types() -> None:
    body = {"name": "x", "deleted": True, "infrastructure_capabilities": {}}
    assert legacy.normalise("service", body) == body


def test_normalise_sat_and_numbers() -> None:
    result = legacy.normalise(
        "stack_application_template", {"name": "s", "services": ["web"], "policies": {"p": [{"n": 2.0}]}}
    )
    assert result == {
        "name": "s",
        "services": [{"name": "web", "service": "web"}],
        "policies": {"p": [{"n": 2}]},
    }


def test_snapshot_created_at() -> None:
    assert legacy.snapshot_created_at({"time": 1746093731.5}) == datetime(
        2025, 5, 1, 10, 2, 11, 500000, tzinfo=UTC
    )
    assert legacy.snapshot_created_at({"time": 0}) == datetime(1970, 1, 1, tzinfo=UTC)
    assert legacy.snapshot_created_at({}) is None
    assert legacy.snapshot_created_at({"time": "yesterday"}) is None
    assert legacy.snapshot_created_at({"time": True}) is None
    assert legacy.snapshot_created_at({"time": 1e300}) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        (True, "true"),
        (False, "false"),
        (2, "2"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "0.00000015"),
        (None, ""),
        ({"a": 1}, '{"a": 1}'),
    ],
)
def test_scalar_text(value: object, text: str) -> None:
    assert legacy.scalar_text(value) == text


def test_json_text() -> None:
    assert legacy.json_text({"provider": ["aws", 1, None]}) == '{"provider": ["aws", 1, null]}'
    assert legacy.json_text("é") == '"é"'
