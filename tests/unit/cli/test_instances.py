import json
from pathlib import Path

import pytest
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer

MANIFEST = """\
stack_infrastructure_template: main
stack_application_template: web_shop
params:
  owner: platform-team
service_params:
  web:
    listen_port: 8081
"""


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "instance.yml"
    path.write_text(MANIFEST)
    return path


def sent(server: FakeServer, method: str, path: str) -> list[dict[str, object]]:
    return [json.loads(r.content) for r in server.requests if r.method == method and r.url.path == path]


def test_apply_c_creates_a_missing_instance(cli: Invoke, server: FakeServer, manifest: Path) -> None:
    result = cli("apply", "-c", str(manifest), "demo", "-p", '{"owner": "me"}', "-r", '{"web": 2}')
    assert result.exit_code == 0, result.output
    assert sent(server, "POST", "/stack_instances") == [
        {
            "stack_instance_name": "demo",
            "stack_infrastructure_template": "main",
            "stack_application_template": "web_shop",
            "params": {"owner": "me"},
            "service_params": {"web": {"listen_port": 8081}},
            "replicas": {"web": 2},
        }
    ]
    assert "web: webserver on production.brussels.dmz" in result.stdout
    assert "creating stack instance demo (task 01TASK" in result.stdout


def test_apply_c_updates_an_existing_instance_without_the_templates(
    cli: Invoke, server: FakeServer, manifest: Path
) -> None:
    result = cli("apply", "-c", str(manifest), "shop", "--force-rerun", "--services", "[]")
    assert result.exit_code == 0, result.output
    assert sent(server, "POST", "/stack_instances") == []
    assert sent(server, "PUT", "/stack_instances") == [
        {
            "stack_instance_name": "shop",
            "params": {"owner": "platform-team"},
            "service_params": {"web": {"listen_port": 8081}},
            "services": [],
            "force_rerun": True,
        }
    ]
    assert "Stack instance updating: shop (task 01TASK" in result.stdout


def test_apply_c_refuses_to_change_the_templates(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    other = tmp_path / "other.yml"
    other.write_text(MANIFEST.replace("web_shop", "other_sat"))
    result = cli("apply", "-c", str(other), "shop")
    assert result.exit_code == 2
    assert "uses stack_application_template 'web_shop', the manifest names 'other_sat'" in result.stderr
    assert sent(server, "PUT", "/stack_instances") == []


def test_apply_c_create_needs_the_templates(cli: Invoke, tmp_path: Path) -> None:
    partial = tmp_path / "partial.yml"
    partial.write_text("params: {a: 1}\n")
    result = cli("apply", "-c", str(partial), "demo")
    assert result.exit_code == 2
    assert "needs stack_infrastructure_template and stack_application_template" in result.stderr


def test_show_progress_lists_steps_and_outputs(cli: Invoke, server: FakeServer, manifest: Path) -> None:
    result = cli("apply", "-c", str(manifest), "demo", "-s")
    assert result.exit_code == 0, result.output
    assert "✓ web[0]/vm@production.brussels.dmz READY 69s" in result.stderr
    assert "task 01TASK00000000000000000001 succeeded: 1 ready" in result.stderr
    assert "stack instance demo:" in result.stdout


def test_a_failed_task_exits_8_listing_failed_steps(cli: Invoke, server: FakeServer) -> None:
    server.task_outcome = "failed"
    result = cli("update", "instance", "shop", "-p", '{"a": 1}', "-s")
    assert result.exit_code == 8, result.output
    assert "✗ web[0]/vm@production.brussels.dmz FAILED 69s: boom" in result.stderr
    assert "Error: task 01TASK00000000000000000001 failed: 1 step(s) failed" in result.stderr


def test_update_instance_sends_only_what_is_given(cli: Invoke, server: FakeServer) -> None:
    result = cli(
        "update", "instance", "shop", "-p", '{"a": 1}', "-p", '{"b": 2}', "--secrets", '{"pw": "x"}', "-d",
        "-r", '{"web": 3}', "-t", '{"tier": "gold"}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sent(server, "PUT", "/stack_instances") == [
        {
            "stack_instance_name": "shop",
            "params": {"a": 1, "b": 2},
            "tags": {"tier": "gold"},
            "replicas": {"web": 3},
            "secrets": {"pw": "x"},
            "disable_invocation": True,
        }
    ]
    assert "services" not in sent(server, "PUT", "/stack_instances")[0]


def test_update_unknown_instance_exits_4(cli: Invoke) -> None:
    result = cli("update", "instance", "nope")
    assert result.exit_code == 4
    assert "Stack instance not found" in result.stderr


def test_update_outputs(cli: Invoke, server: FakeServer) -> None:
    result = cli(
        "update", "outputs", "shop", "-p", '{"url": "http://x"}', "-i", "production.brussels.dmz", "-s", "web"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Updated outputs\n"
    assert sent(server, "POST", "/outputs") == [
        {
            "stack_instance": "shop",
            "service": "web",
            "infrastructure_target": "production.brussels.dmz",
            "outputs": {"url": "http://x"},
        }
    ]


def test_update_outputs_needs_target_and_service(cli: Invoke) -> None:
    assert cli("update", "outputs", "shop", "-p", "{}").exit_code == 2


def test_delete_instance_follows_its_task(cli: Invoke, server: FakeServer) -> None:
    result = cli("delete", "instance", "shop", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Stack instance shop is being deleted",
        "stack instance shop: removed",
    ]


def test_create_instance_needs_both_templates(cli: Invoke, server: FakeServer) -> None:
    result = cli("create", "instance", "demo", "--stack-infrastructure-template", "main")
    assert result.exit_code == 2
    assert "missing option --stack-application-template" in result.stderr
    ok = cli(
        "create", "instance", "demo", "--stack-infrastructure-template", "main",
        "--stack-application-template", "web_shop", "-p", '{"a": 1}',
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert sent(server, "POST", "/stack_instances")[0]["params"] == {"a": 1}
