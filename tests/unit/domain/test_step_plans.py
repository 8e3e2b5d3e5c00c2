"""The create and delete step plans of an instance, from plain data (domain/step_plans.py)."""

from typing import Any

from stackl.domain import step_plans

SHELL = {"invocation": {"generic": {"tool": "shell", "command": "true"}}}


def test_invocation_falls_back_to_generic_then_none() -> None:
    fr = {"invocation": {"aws": {"tool": "terraform"}, "generic": {"tool": "shell"}}}
    assert step_plans.invocation_of(fr, "aws") == {"tool": "terraform"}
    assert step_plans.invocation_of(fr, "gcp") == {"tool": "shell"}
    assert step_plans.invocation_of({"invocation": {"aws": {"tool": "terraform"}}}, "gcp") is None
    assert step_plans.invocation_of({"invocation": "not a mapping"}, "aws") is None


def test_create_plan_of_a_placement_runs_every_fr_unless_a_policy_skips_it() -> None:
    capabilities = {"t1": {"agent": "a1", "cloud_provider": "generic"}}
    plan = step_plans.create_step_plan(
        [("web", ["web"])],
        ["web"],
        {"web": ["t1"]},
        capabilities,
        {"web": ["vm", "app"]},
        {"vm": SHELL, "app": SHELL},
        {("web", 0, "app"): ("skip", "skipped by service policy p")},
    )
    steps = [(s.id, s.tool, s.agent, s.decision, s.reason) for g in plan for s in g.steps]
    assert steps == [
        ("web/0/vm", "shell", "a1", "run", "new replica"),
        ("web/0/app", "shell", "a1", "skip", "skipped by service policy p"),
    ]


def test_status_entry_of_a_skipped_and_a_toolless_step() -> None:
    step: dict[str, Any] = {
        "service": "web",
        "functional_requirement": "vm",
        "infrastructure_target": "t1",
        "replica": 0,
        "action": "create",
        "tool": "shell",
        "decision": "skip",
        "reason": "skipped by service policy p",
    }
    assert step_plans.status_entry(step, "01T")["status"] == "SKIPPED"
    failed = step_plans.status_entry(
        {**step, "decision": "run", "tool": None, "reason": "no invocation"}, "01T"
    )
    assert (failed["status"], failed["error_message"], failed["task_id"]) == (
        "FAILED",
        "no invocation",
        "01T",
    )


def test_delete_plan_reverses_order_and_removes_steps_that_never_started() -> None:
    body = {
        "services": {"web": [{"agent": "a1", "cloud_provider": "generic", "service": "nginx"}]},
        "status": [
            {
                "service": "web",
                "functional_requirement": "vm",
                "infrastructure_target": "t1",
                "replica": 0,
                "status": "READY",
            },
            {
                "service": "web",
                "functional_requirement": "app",
                "infrastructure_target": "t1",
                "replica": 0,
                "status": "FAILED",
            },
        ],
    }
    groups = step_plans.delete_groups(body, {"vm": SHELL, "app": SHELL})
    steps = [(s["id"], s["decision"], s["reason"]) for g in groups for s in g["steps"]]
    assert steps == [("web/0/app", "remove", "no job ever started"), ("web/0/vm", "run", "delete")]
    answer = step_plans.delete_plan_answer("shop", body, groups)
    assert answer["changes"]["services_removed"] == ["web"]
    assert [s["id"] for g in answer["plan"] for s in g["steps"]] == ["web/0/app", "web/0/vm"]
