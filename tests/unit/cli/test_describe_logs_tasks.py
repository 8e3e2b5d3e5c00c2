import json
from datetime import UTC, datetime

import pytest
from tests import factories
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer

from stackl.cli import logs

PLACEMENT = {
    "services": {
        "web": {
            "service": "webserver",
            "replicas": 1,
            "candidates": {
                "production.brussels.dmz": {
                    "result": "chosen",
                    "replica": 0,
                    "checks": [{"check": "resources", "result": "pass"}, {"check": "tags", "result": "pass"}],
                },
                "production.ghent.dmz": {"result": "spare", "details": ["not needed for 1 replica"]},
                "production.brussels.internal": {
                    "result": "rejected",
                    "checks": [
                        {"check": "tags", "result": "fail", "details": ["network: needs dmz, has lan"]}
                    ],
                },
            },
        }
    }
}


def line(seq: int, text: str, **extra: object) -> dict[str, object]:
    return {
        "seq": seq,
        "time": f"2025-05-01T10:15:3{seq}.000Z",
        "task_id": "01TASK00000000000000000001",
        "job_id": "01JOB",
        "attempt": 1,
        "step": "web/0/vm",
        "service": "web",
        "replica": 0,
        "functional_requirement": "vm",
        "infrastructure_target": "production.brussels.dmz",
        "stream": "stdout",
        "line": text,
        **extra,
    }


@pytest.fixture
def deployed(server: FakeServer) -> FakeServer:
    status = factories.status_entry(status="FAILED", error_message="terraform failed\nat line 3", attempt=2)
    server.write(
        factories.stack_instance(
            status=[status],
            state="FAILED",
            task={"id": "01TASK00000000000000000001", "kind": "create", "state": "failed"},
            placement=PLACEMENT,
            instance_params={"owner": "team-a", "api_token": "plain?"},
            instance_secrets={"db_password": "c3VwZXI="},
            service_params={"web": {"listen_port": 80}},
            instance_outputs={"web_url": "http://x"},
        ),
        "update",
    )
    server.task_outcome = "failed"
    server.start_task("create", "shop")
    return server


def test_describe_instance_sections(cli: Invoke, deployed: FakeServer) -> None:
    result = cli("describe", "instance", "shop")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "State:     FAILED (0/1 steps ready)" in out
    assert "Task:      01TASK00000000000000000001 create failed" in out
    assert "web[0]    vm   production.brussels.dmz   bru-agent   FAILED   terraform failed   2" in out
    assert "chosen (replica 0)   production.brussels.dmz: passed resources, tags" in out
    assert "spare                production.ghent.dmz: not needed for 1 replica" in out
    assert "rejected             production.brussels.internal: tags: network: needs dmz, has lan" in out
    assert "  web_url: http://x" in out
    assert "  owner: team-a" in out
    assert "  api_token: ********" in out
    assert "plain?" not in out
    assert "  db_password: ******** (secret)" in out
    assert "c3VwZXI=" not in out
    assert "  web: listen_port: 80" in out
    assert "Last tasks:" in out


def test_describe_instance_json_has_the_tasks(cli: Invoke, deployed: FakeServer) -> None:
    result = cli("describe", "instance", "shop", "-o", "json")
    body = json.loads(result.stdout)
    assert body["name"] == "shop"
    assert body["metadata"]["revision"] == 2
    assert [t["id"] for t in body["tasks"]] == ["01TASK00000000000000000001"]


def test_describe_unknown_instance_exits_4(cli: Invoke) -> None:
    assert cli("describe", "instance", "nope").exit_code == 4


def test_logs_print_every_page_with_marks(cli: Invoke, deployed: FakeServer) -> None:
    deployed.log_lines = [line(1, "one"), line(2, "two", stream="stderr"), line(3, "retry", stream="system")]
    result = cli("logs", "shop")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "web[0]/vm@production.brussels.dmz | one",
        "web[0]/vm@production.brussels.dmz [stderr] | two",
        "web[0]/vm@production.brussels.dmz [system] | retry",
    ]
    cursors = [r.url.params.get("cursor") for r in deployed.requests if r.url.path.endswith("/logs")]
    assert cursors == [None, "2"]  # page size 2: the second page starts at the cursor


def test_logs_filters_tail_and_json(cli: Invoke, deployed: FakeServer) -> None:
    deployed.log_lines = [line(1, "one"), line(2, "two"), line(3, "three", service="db")]
    result = cli("logs", "shop", "--service", "web", "--tail", "1", "-o", "json")
    assert [json.loads(x)["line"] for x in result.stdout.splitlines()] == ["two"]
    request = next(r for r in deployed.requests if r.url.path.endswith("/logs"))
    assert request.url.params["service"] == "web"


def test_follow_a_task_log_ends_with_the_task(cli: Invoke, deployed: FakeServer) -> None:
    deployed.log_lines = [line(1, "one")]
    result = cli("tasks", "logs", "01TASK00000000000000000001", "-f", "--timestamps")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("web[0]/vm@production.brussels.dmz | one\n")


def test_step_log(cli: Invoke, deployed: FakeServer) -> None:
    deployed.log_lines = [line(1, "one"), line(2, "db", service="db")]
    result = cli("tasks", "logs", "01TASK00000000000000000001", "--step", "web/0/vm")
    assert result.stdout == "web[0]/vm@production.brussels.dmz | one\n"
    assert deployed.requests[-1].url.path == "/tasks/01TASK00000000000000000001/steps/web/0/vm/log"
    assert cli("tasks", "logs", "01TASK00000000000000000001", "--step", "web").exit_code == 2


def test_logs_of_an_unknown_instance_exit_4(cli: Invoke) -> None:
    result = cli("logs", "nope")
    assert result.exit_code == 4
    assert "stack instance nope not found" in result.stderr


def test_since() -> None:
    now = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert logs.since_time("10m", now=now) == datetime(2025, 5, 1, 11, 50, tzinfo=UTC)
    assert logs.since_time("2025-05-01T10:00:00Z") == datetime(2025, 5, 1, 10, 0, tzinfo=UTC)


def test_tasks_list_show_wait_cancel(cli: Invoke, deployed: FakeServer) -> None:
    listed = cli("tasks")
    assert listed.exit_code == 0, listed.output
    assert "01TASK00000000000000000001   create   shop       failed   1/1" in listed.stdout
    shown = cli("tasks", "show", "01TASK00000000000000000001", "--steps")
    assert "web/0/vm   failed   FAILED   bru-agent   1         69s        boom" in shown.stdout
    assert cli("tasks", "wait", "01TASK00000000000000000001").exit_code == 8
    assert cli("tasks", "cancel", "01TASK00000000000000000001").exit_code == 5
    assert cli("tasks", "list", "--instance", "other", "-o", "json").stdout.strip() == "[]"
