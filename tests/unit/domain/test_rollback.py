"""Rollback planning (domain/rollback.py): pure functions of the plan, the instance's statuses and the task."""

from typing import Any

from stackl.domain import rollback

T = "01TASK"


def step(service: str, fr: str, action: str = "create", replica: int = 0) -> dict[str, Any]:
    return {"id": f"{service}/{replica}/{fr}", "service": service, "replica": replica,
            "functional_requirement": fr, "action": action, "decision": "run"}  # fmt: skip


def entry(service: str, fr: str, status: str, *, task: str = T, action: str = "create") -> dict[str, Any]:
    return {"service": service, "replica": 0, "functional_requirement": fr, "status": status,
            "task_id": task, "action": action}  # fmt: skip


PLAN = [
    {"stage": "db", "steps": [step("db", "vm"), step("db", "pg")]},
    {"stage": "web", "steps": [step("web", "nginx")]},
]


def test_compensation_deletes_what_this_task_created_in_reverse_order() -> None:
    body = {
        "status": [entry("db", "vm", "READY"), entry("db", "pg", "READY"), entry("web", "nginx", "FAILED")]
    }
    groups = rollback.compensation(PLAN, body, T)
    assert [[(s["id"], s["action"]) for s in g["steps"]] for g in groups] == [
        [("db/0/pg", "delete"), ("db/0/vm", "delete")]
    ]
    assert rollback.compensation(PLAN, body, "01OTHER") == []  # another task's statuses: nothing to undo


def test_a_marked_compensation_step_counts_whatever_its_state() -> None:
    body = {
        "rolling_back": T,
        "status": [entry("db", "vm", "FAILED", action="delete"), entry("web", "nginx", "FAILED")],
    }
    # The failed delete of vm is still a compensation step: a replay sees it failed, not forgotten.
    assert [s["id"] for g in rollback.compensation(PLAN, body, T) for s in g["steps"]] == ["db/0/vm"]


def test_reapply_and_marked_reapply_plan_the_same_groups() -> None:
    plan = [
        {"stage": "removal", "steps": [step("web", "nginx", "delete", replica=1)]},
        {"stage": "db", "steps": [step("db", "vm", "update")]},
        {"stage": "web", "steps": [step("web", "nginx", "update")]},
    ]
    ran = {
        "status": [
            entry("db", "vm", "READY", action="update"),
            entry("web", "nginx", "FAILED", action="update"),
        ]
    }
    planned = rollback.reapply(plan, ran, T)
    assert [(g["stage"], [(s["id"], s["action"]) for s in g["steps"]]) for g in planned] == [
        ("rollback", [("web/1/nginx", "create")]),
        ("db", [("db/0/vm", "update")]),
        ("web", [("web/0/nginx", "update")]),
    ]
    marked = {"status": [*ran["status"], {**entry("web", "nginx", "in_progress"), "replica": 1}]}
    assert rollback.marked_reapply(plan, marked, T) == planned
