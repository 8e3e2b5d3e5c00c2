"""The step plan's ordering rules (lifecycle.md §4.1)."""

import pytest

from stackl import errors
from stackl.domain import plans


def place(*targets: str) -> list[plans.ReplicaPlacement]:
    return [plans.ReplicaPlacement(target=t, agent=f"agent-{t}", cloud_provider="generic") for t in targets]


def run(alias: str, replica: int, fr: str) -> tuple[str, str]:
    return ("run", "new replica")


def tools(fr: str, cloud_provider: str) -> str | None:
    return "ansible"


def test_without_stages_each_alias_is_a_group_in_declared_order() -> None:
    assert plans.stage_groups(["db", "web", "cache"], []) == [
        ("db", ["db"]),
        ("web", ["web"]),
        ("cache", ["cache"]),
    ]


def test_stages_then_an_implicit_stage_for_the_rest() -> None:
    groups = plans.stage_groups(["db", "web", "cache"], [("infra", ["db"]), ("app", ["web"])])
    assert groups == [("infra", ["db"]), ("app", ["web"]), (plans.IMPLICIT_STAGE, ["cache"])]


def test_stage_with_unknown_or_repeated_alias_is_refused_naming_the_field() -> None:
    with pytest.raises(errors.InvalidDocument) as caught:
        plans.stage_groups(["db", "web"], [("a", ["db", "nope"]), ("b", ["db"])])
    locs = [e["loc"] for e in caught.value.errors]
    assert locs == [["body", "stages", 0, "services", 1], ["body", "stages", 1, "services", 0]]
    assert "unknown service alias 'nope'" in caught.value.message
    assert "'db' is already in stage 'a'" in caught.value.message


def test_create_plan_orders_replicas_and_frs() -> None:
    groups = plans.stage_groups(["db", "web"], [])
    plan = plans.create_plan(
        groups,
        {"db": place("t1", "t2"), "web": place("t3")},
        {"db": ["vm", "pg"], "web": ["nginx"]},
        {},
        tools,
        run,
    )
    assert [g.stage for g in plan] == ["db", "web"]
    assert [s.id for s in plan[0].steps] == ["db/0/vm", "db/0/pg", "db/1/vm", "db/1/pg"]
    first = plan[0].steps[0]
    assert (first.infrastructure_target, first.agent, first.tool, first.action) == (
        "t1",
        "agent-t1",
        "ansible",
        "create",
    )
    assert plan[1].view()["steps"][0]["id"] == "web/0/nginx"


def test_as_group_fr_runs_once_on_replica_zero_with_all_targets() -> None:
    plan = plans.create_plan(
        [("db", ["db"])], {"db": place("t1", "t2")}, {"db": ["vm", "cluster"]}, {"cluster": True}, tools, run
    )
    ids = [s.id for s in plan[0].steps]
    assert ids == ["db/0/vm", "db/0/cluster", "db/1/vm"]
    assert plan[0].steps[1].infrastructure_target == "t1,t2"


def test_zero_replicas_and_missing_invocation() -> None:
    plan = plans.create_plan(
        [("db", ["db"]), ("web", ["web"])],
        {"db": [], "web": place("t1")},
        {"db": ["vm"], "web": ["nginx"]},
        {},
        lambda fr, cp: None,
        run,
    )
    assert [g.stage for g in plan] == ["web"]  # an alias with 0 replicas has no steps
    assert plan[0].steps[0].tool is None
    assert plan[0].steps[0].reason == "no invocation for cloud provider generic"


def test_skip_decisions_come_from_the_caller() -> None:
    def decide(alias: str, replica: int, fr: str) -> tuple[str, str]:
        return ("skip", "skipped by service policy p") if fr == "pg" else ("run", "new replica")

    plan = plans.create_plan([("db", ["db"])], {"db": place("t1")}, {"db": ["vm", "pg"]}, {}, tools, decide)
    assert [(s.functional_requirement, s.decision, s.reason) for s in plan[0].steps] == [
        ("vm", "run", "new replica"),
        ("pg", "skip", "skipped by service policy p"),
    ]
