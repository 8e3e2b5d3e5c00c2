"""Stack instance and snapshot documents (documents.md §9, §10)."""

from typing import Any

import pytest
from tests import factories

from stackl import errors
from stackl.domain import documents, records


def invalid(body: object) -> list[dict[str, Any]]:
    with pytest.raises(errors.InvalidDocument) as caught:
        documents.validate(body)
    return caught.value.errors


def test_stack_instance_field_order() -> None:
    assert list(documents.validate(factories.stack_instance())) == [
        "name", "type", "category", "description", "stack_infrastructure_template",
        "stack_application_template", "instance_params", "service_params", "instance_secrets",
        "service_secrets", "instance_outputs", "services", "groups", "status", "stages", "deleted", "tags",
        "placement", "extra_services", "steps", "posted_outputs", "rolling_back", "rollback_record",
    ]  # fmt: skip


def test_stack_instance_deleted_is_ignored_and_always_false() -> None:
    assert documents.validate(factories.stack_instance(deleted=True))["deleted"] is False
    assert documents.validate(factories.stack_instance(deleted="yes"))["deleted"] is False


def test_computed_state_and_task_are_accepted_and_not_stored() -> None:
    body = factories.stack_instance(state="READY", task={"id": "01J", "kind": "create", "state": "succeeded"})
    canonical = documents.validate(body)
    assert "state" not in canonical
    assert "task" not in canonical


def test_replica_defaults() -> None:
    body = factories.stack_instance(
        services={"web": [{"infrastructure_target": "p.b.z", "service": "webserver"}]}
    )
    assert documents.validate(body)["services"]["web"] == [
        {
            "infrastructure_target": "p.b.z",
            "service": "webserver",
            "agent": "common",
            "cloud_provider": "generic",
            "provisioning_parameters": {},
            "secrets": {},
            "hosts": [],
            "resources": {},
            "tags": {},
            "opa_outputs": {},
            "outputs": {},
        }
    ]


def test_replica_rules() -> None:
    bad = factories.replica(infrastructure_target="production.brussels", extra=1, resources={"cpu": []})
    problems = invalid(factories.stack_instance(services={"web.1": [bad]}))
    assert [p["loc"] for p in problems] == [
        ["services", "web.1"],
        ["services", "web.1", 0, "infrastructure_target"],
        ["services", "web.1", 0, "resources", "cpu"],
        ["services", "web.1", 0, "extra"],
    ]


def test_status_entries() -> None:
    full = factories.status_entry(
        status="FAILED",
        error_message="timed out after 900 s",
        replica=0,
        action="create",
        task_id="01JNM3PZ7XQ4V8K2D5R9T6W1YB",
        job_id="01JNM3Q0ABX7M2K9C4D8F6G3HS",
        attempt=1,
        started_at="2025-05-01T10:15:31.002Z",
        finished_at="2025-05-01T10:16:40.517Z",
        input_hash="sha256:5f1c0e",
    )
    assert documents.validate(factories.stack_instance(status=[full]))["status"] == [full]
    entry = documents.validate(factories.stack_instance())["status"][0]
    assert {k: entry[k] for k in records.STATUS_EXTENSION_FIELDS} == dict.fromkeys(
        records.STATUS_EXTENSION_FIELDS
    )


@pytest.mark.parametrize("status", records.STEP_STATUSES)
def test_step_statuses(status: str) -> None:
    body = factories.stack_instance(status=[factories.status_entry(status=status)])
    assert documents.validate(body)["status"][0]["status"] == status


@pytest.mark.parametrize(("field", "value"), [
    ("status", "ready"),
    ("status", "DONE"),
    ("action", "destroy"),
    ("replica", -1),
    ("attempt", 0),
    ("error_message", "x" * (8 * 1024 + 1)),
    ("infrastructure_target", "production.brussels.dmz,other"),
])  # fmt: skip
def test_status_entry_rules(field: str, value: object) -> None:
    problems = invalid(factories.stack_instance(status=[factories.status_entry(**{field: value})]))
    assert [p["loc"] for p in problems] == [["status", 0, field]]


def test_as_group_status_target_lists_every_replica_target() -> None:
    target = "production.brussels.dmz,production.brussels.internal"
    body = factories.stack_instance(status=[factories.status_entry(infrastructure_target=target)])
    assert documents.validate(body)["status"][0]["infrastructure_target"] == target


def test_error_message_limit_counts_bytes() -> None:
    body = factories.stack_instance(status=[factories.status_entry(error_message="é" * 4096)])
    assert documents.validate(body)["status"][0]["error_message"] == "é" * 4096
    assert invalid(factories.stack_instance(status=[factories.status_entry(error_message="é" * 4097)]))


def test_stack_instance_maps_are_keyed_by_alias() -> None:
    problems = invalid(
        factories.stack_instance(service_params={"bad alias": {}}, service_secrets={"web": []})
    )
    assert [p["loc"] for p in problems] == [["service_params", "bad alias"], ["service_secrets", "web"]]


def test_stack_instance_groups_and_tags() -> None:
    groups = {"webservers": [{"host": "web01", "target": "production.brussels.dmz"}]}
    canonical = documents.validate(
        factories.stack_instance(groups=groups, tags={"environment": "production"})
    )
    assert canonical["groups"] == groups
    assert canonical["tags"] == {"environment": "production"}


def test_snapshot_validates_its_copy_as_a_document() -> None:
    canonical = documents.validate(factories.snapshot())
    assert canonical["snapshot"] == documents.validate(factories.service())
    assert canonical["source"] == {"type": "service", "name": "webserver", "revision": 1}


def test_snapshot_copy_errors_are_located_inside_it() -> None:
    problems = invalid(factories.snapshot(snapshot=factories.service(functional_requirements="vm", colour=1)))
    assert problems == [
        {"loc": ["snapshot", "functional_requirements"], "msg": "must be a list", "type": "type"},
        {"loc": ["snapshot", "colour"], "msg": "unknown field", "type": "extra_forbidden"},
    ]


def test_snapshot_copy_type_must_match_its_source() -> None:
    problems = invalid(factories.snapshot(snapshot=factories.zone()))
    assert problems == [{"loc": ["snapshot", "type"], "msg": "must be service", "type": "enum"}]


def test_snapshot_and_its_copy_are_checked_together() -> None:
    problems = invalid(factories.snapshot(colour=1, snapshot=factories.service(colour=2)))
    assert [p["loc"] for p in problems] == [["colour"], ["snapshot", "colour"]]


def test_snapshot_of_a_snapshot_is_refused() -> None:
    problems = invalid(
        factories.snapshot(source={"type": "snapshot", "name": "x"}, snapshot=factories.snapshot())
    )
    assert problems[0]["loc"] == ["source", "type"]


def test_0_5_snapshot_time_and_missing_source() -> None:
    """A 0.5 snapshot carries `time` and no `source`: the source is the document it holds."""
    body = {
        "name": "stack_instance_shop_2021-03-01",
        "type": "snapshot",
        "category": "history",
        "description": None,
        "time": 1614556800.25,
        "snapshot": factories.stack_instance(deleted=False),
    }
    canonical = documents.validate(body)
    assert "time" not in canonical
    assert canonical["description"] == ""
    assert canonical["source"] == {"type": "stack_instance", "name": "shop", "revision": None}


def test_snapshot_copy_must_be_an_object() -> None:
    assert [p["loc"] for p in invalid(factories.snapshot(snapshot=[1]))] == [["snapshot"]]
    problems = invalid({"name": "s", "type": "snapshot", "snapshot": {"type": "nope", "name": "x"}})
    assert problems[0]["loc"] == ["source", "type"]
