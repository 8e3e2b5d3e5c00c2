"""``apply_progress``: progress rows applied to an instance body in seq order, those of an older revision ignored."""

from datetime import UTC, datetime
from typing import Any

import pytest

from stackl import errors
from stackl.domain.step_progress import ProgressRow, apply_entry, apply_progress, progress_key

MOMENT = datetime(2026, 12, 7, tzinfo=UTC)


def body() -> dict[str, Any]:
    return {
        "services": {"web": [{"outputs": {"a": 1}}, {"outputs": {}}]},
        "status": [
            {
                "service": "web",
                "replica": 0,
                "functional_requirement": "vm",
                "status": "in_progress",
                "task_id": "t1",
            },
            {
                "service": "web",
                "replica": 1,
                "functional_requirement": "vm",
                "status": "in_progress",
                "task_id": "t0",
            },
        ],
        "steps": {"web/1/vm": {"outputs": {}, "input_hash": "old"}},
    }


def row(key: str, seq: int, entry: dict[str, Any], revision: int = 3) -> ProgressRow:
    return ProgressRow(key=key, seq=seq, revision=revision, time=MOMENT, entry=entry)


def test_rows_apply_in_seq_order_and_report_the_highest_applied() -> None:
    instance = body()
    rows = [
        row("web/0/vm", 9, {"status": {"status": "READY", "attempt": 1}}),
        row("web/0/vm", 4, {"status": {"status": "FAILED"}}),  # older: overwritten by seq 9
    ]
    assert apply_progress(instance, rows, revision=3) == 9
    assert instance["status"][0] | {} == {
        "service": "web", "replica": 0, "functional_requirement": "vm", "status": "READY", "task_id": "t1",
        "attempt": 1,
    }  # fmt: skip


def test_a_step_taken_over_from_an_older_task_is_updated() -> None:
    """An ``unchanged`` step the task ran after all still carries the id of the task that last ran it."""
    instance = body()
    apply_progress(
        instance, [row("web/1/vm", 5, {"task_id": "t1", "status": {"status": "READY", "task_id": "t1"}})], 3
    )
    assert instance["status"][1]["status"] == "READY"
    assert instance["status"][1]["task_id"] == "t1"


def test_rows_of_an_older_revision_are_ignored() -> None:
    instance = body()
    assert apply_progress(instance, [row("web/0/vm", 5, {"status": {"status": "READY"}}, revision=2)], 3) == 0
    assert instance == body()


def test_outputs_records_and_removal() -> None:
    instance = body()
    apply_entry(
        instance,
        "web/0/vm",
        {
            "status": {"status": "READY"},
            "step_id": "web/0/vm",
            "record": {"outputs": {"ip": "10.0.0.1"}, "input_hash": "h"},
            "outputs": {"ip": "10.0.0.1"},
            "alias": "web",
            "index": 0,
        },
    )
    assert instance["instance_outputs"] == {"ip": "10.0.0.1"}
    assert instance["services"]["web"][0]["outputs"] == {"a": 1, "ip": "10.0.0.1"}
    assert instance["services"]["web"][1]["outputs"] == {}  # one replica's step: its replica only
    assert instance["steps"]["web/0/vm"] == {"outputs": {"ip": "10.0.0.1"}, "input_hash": "h"}
    apply_entry(instance, "web/1/vm", {"removed": True, "step_id": "web/1/vm"})
    assert [progress_key(("web", 0, "vm"))] == [
        f"{e['service']}/{e['replica']}/{e['functional_requirement']}" for e in instance["status"]
    ]
    assert "web/1/vm" not in instance["steps"]


def test_an_entry_for_a_step_the_body_does_not_have_changes_no_status() -> None:
    instance = body()
    apply_entry(instance, "db/0/vm", {"status": {"status": "READY"}, "step_id": "db/0/vm", "record": {}})
    assert instance == body()


def test_invalid_hosts_in_outputs_are_refused() -> None:
    with pytest.raises(errors.InvalidInput):
        apply_entry(
            body(), "web/0/vm", {"outputs": {"stackl_hosts": "not-a-list"}, "alias": "web", "index": 0}
        )
