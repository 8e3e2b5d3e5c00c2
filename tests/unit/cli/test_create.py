import json
from pathlib import Path

from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer


def test_create_snapshot_prints_its_name(cli: Invoke, server: FakeServer) -> None:
    result = cli("create", "snapshot", "stack_application_template", "web_shop")
    assert result.exit_code == 0, result.output
    assert result.stdout == "stack_application_template_web_shop_2025-05-01_10h15m30s\n"
    assert server.requests[0].content == b""


def test_create_snapshot_options(cli: Invoke, server: FakeServer) -> None:
    server.write({"name": "dmz", "type": "zone", "description": "v2"}, "update")
    result = cli(
        "create", "snapshot", "zones", "dmz", "--name", "old", "--description", "why", "--revision", "1"
    )
    assert result.stdout == "old\n"
    assert json.loads(server.requests[0].content) == {"name": "old", "description": "why", "revision": 1}
    assert server.stored("snapshot", "old")["snapshot"]["params"] == {"network": "dmz-vlan-20"}


def test_create_snapshot_of_a_missing_document_exits_4(cli: Invoke) -> None:
    assert cli("create", "snapshot", "zone", "nope").exit_code == 4


def test_create_policy(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    rego = tmp_path / "naming.rego"
    rego.write_text("package naming\n\nallow := true\n")
    result = cli(
        "create", "policy", "naming", "-p", str(rego), "-i", "a, b", "--outputs", "x", "--description", "d"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "saved policy-template naming (revision 1)\n"
    assert json.loads(server.requests[0].content) == {
        "name": "naming",
        "type": "policy_template",
        "category": "configs",
        "description": "d",
        "policy": "package naming\n\nallow := true\n",
        "inputs": ["a", "b"],
        "outputs": ["x"],
    }


def test_policy_compile_errors_exit_3_with_line_and_column(cli: Invoke, tmp_path: Path) -> None:
    rego = tmp_path / "bad.rego"
    rego.write_text("package other\n")
    result = cli("create", "policy", "naming", "-p", str(rego))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[:2] == [
        "Error: the policy does not compile",
        "  policy: 1:1: the package must be naming",
    ]


def test_missing_policy_file_is_a_usage_error(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    assert cli("create", "policy", "naming", "-p", str(tmp_path / "nope.rego")).exit_code == 2
    undecodable = tmp_path / "bin.rego"
    undecodable.write_bytes(b"\xff\xfe\x00")
    result = cli("create", "policy", "naming", "-p", str(undecodable))
    assert result.exit_code == 2
    assert f"cannot read {undecodable}" in result.stderr
    assert server.requests == []
