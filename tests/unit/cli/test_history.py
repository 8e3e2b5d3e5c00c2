import json
from pathlib import Path

import yaml
from tests import factories
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer


def changed(server: FakeServer) -> None:
    server.write(factories.zone(params={"network": "dmz-vlan-30"}), "update")
    server.write(factories.zone(params={"network": "dmz-vlan-40"}), "update")


def test_history_table(cli: Invoke, server: FakeServer) -> None:
    changed(server)
    result = cli("history", "zone", "dmz")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["REVISION", "ACTION", "TIME", "BY", "TASK", "RESTORED", "FROM"]
    assert [r.split()[:2] for r in rows[1:]] == [["3", "update"], ["2", "update"], ["1", "create"]]
    limited = cli("history", "zone", "dmz", "--limit", "1", "-o", "json")
    assert [e["revision"] for e in json.loads(limited.stdout)] == [3]


def test_diff_defaults_to_previous_and_latest(cli: Invoke, server: FakeServer) -> None:
    changed(server)
    result = cli("diff", "zone", "dmz")
    assert result.exit_code == 0, result.output
    assert "-  network: dmz-vlan-30\n+  network: dmz-vlan-40\n" in result.stdout
    assert server.requests[-1].url.path == "/documents/zone/dmz/revisions/2/diff/3"


def test_diff_with_a_and_b_and_json(cli: Invoke, server: FakeServer) -> None:
    changed(server)
    assert cli("diff", "zone", "dmz", "1").exit_code == 0
    assert server.requests[-1].url.path == "/documents/zone/dmz/revisions/1/diff/latest"
    result = cli("diff", "zone", "dmz", "1", "2", "-o", "json")
    assert json.loads(result.stdout) == [{"op": "replace", "path": "/params/network", "value": "dmz-vlan-30"}]


def test_diff_exit_code(cli: Invoke, server: FakeServer) -> None:
    changed(server)
    assert cli("diff", "zone", "dmz", "--exit-code").exit_code == 10
    assert cli("diff", "zone", "dmz", "3", "3", "--exit-code").exit_code == 0
    single = cli("diff", "zone", "internal", "--exit-code")
    assert single.exit_code == 0
    assert "single revision" in single.stderr


def test_bad_revision_is_a_usage_error(cli: Invoke) -> None:
    assert cli("diff", "zone", "dmz", "first").exit_code == 2
    assert cli("diff", "zone").exit_code == 2
    assert cli("diff").exit_code == 2


def test_diff_of_local_files(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "z.yml").write_text(yaml.safe_dump(factories.zone(params={"network": "other"})))
    result = cli("diff", "-d", str(tmp_path), "--exit-code")
    assert result.exit_code == 10
    assert "+  network: other\n" in result.stdout
    assert server.stored("zone", "dmz")["params"] == {"network": "dmz-vlan-20"}
    bulk = [r for r in server.requests if r.url.path == "/documents"]
    assert dict(bulk[0].url.params) == {"dry_run": "true", "diff": "true"}
    as_json = json.loads(cli("diff", "-f", str(tmp_path / "z.yml"), "-o", "json").stdout)
    assert as_json[0]["action"] == "updated"


def test_diff_of_unchanged_files(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "z.yml").write_text(yaml.safe_dump(factories.zone()))
    result = cli("diff", "-f", str(tmp_path / "z.yml"), "--exit-code")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No differences." in result.stderr


def test_restore_a_revision(cli: Invoke, server: FakeServer) -> None:
    changed(server)
    result = cli("restore", "zone", "dmz", "--revision", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "restored zone dmz revision 1 as revision 4\n"
    assert server.stored("zone", "dmz")["params"] == {"network": "dmz-vlan-20"}
    assert server.history[("zone", "dmz")][0]["restored_from"] == 1


def test_restore_an_instance_prints_its_task(cli: Invoke) -> None:
    result = cli("restore", "instance", "shop", "--revision", "1")
    assert result.exit_code == 0
    assert result.stdout == "restoring instance shop to revision 1: task 01TASKRESTORE\n"


def test_restore_a_snapshot(cli: Invoke, server: FakeServer) -> None:
    cli("create", "snapshot", "zone", "dmz", "--name", "before")
    changed(server)
    result = cli("restore", "before")
    assert result.exit_code == 0
    assert result.stdout == "snapshot before restored\n"
    assert server.stored("zone", "dmz")["params"] == {"network": "dmz-vlan-20"}


def test_restore_needs_one_of_its_forms(cli: Invoke, server: FakeServer) -> None:
    assert cli("restore", "zone", "dmz").exit_code == 2
    assert cli("restore", "snap", "--revision", "2").exit_code == 2
    assert server.requests == []
