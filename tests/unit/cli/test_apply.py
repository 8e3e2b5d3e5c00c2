import json
from pathlib import Path
from typing import Any

import yaml
from tests import factories
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bulk_requests(server: FakeServer) -> list[list[dict[str, Any]]]:
    return [
        json.loads(r.content) for r in server.requests if r.method == "POST" and r.url.path == "/documents"
    ]


def test_apply_sends_every_document_in_one_request(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(
        docs / "infra" / "zones.yaml",
        yaml.safe_dump_all([factories.zone("blue"), factories.zone("dmz", description="new")]),
    )
    write(docs / "fr.json", json.dumps(factories.functional_requirement("nginx")))
    write(docs / "list.json", json.dumps([factories.service("cache"), factories.service("db")]))
    write(docs / ".hidden.yml", yaml.safe_dump(factories.zone("hidden")))
    write(docs / ".git" / "zone.yml", yaml.safe_dump(factories.zone("git")))
    write(docs / "notes.txt", "not a document")
    result = cli("apply", "-d", str(docs))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "created functional_requirement nginx (revision 1)",
        "created zone blue (revision 1)",
        "updated zone dmz (revision 2)",
        "created service cache (revision 1)",
        "created service db (revision 1)",
    ]
    sent = bulk_requests(server)
    assert len(sent) == 1
    assert sorted(d["name"] for d in sent[0]) == ["blue", "cache", "db", "dmz", "nginx"]
    assert server.current("zone", "hidden") is None


def test_a_bad_file_is_named_and_nothing_is_sent(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    write(tmp_path / "good.yml", yaml.safe_dump(factories.zone("blue")))
    write(tmp_path / "noname.yml", yaml.safe_dump({"type": "zone"}))
    write(tmp_path / "many.yml", yaml.safe_dump_all([factories.zone("x"), {"name": "w", "type": "widget"}]))
    write(tmp_path / "si.yml", yaml.safe_dump(factories.stack_instance()))
    result = cli("apply", "-d", str(tmp_path))
    assert result.exit_code == 3
    assert f"{tmp_path / 'noname.yml'}: the document has no name" in result.stderr
    assert f"{tmp_path / 'many.yml'} (document 2): unknown type 'widget'" in result.stderr
    assert "type 'stack_instance' cannot be applied" in result.stderr
    assert "nothing was applied" in result.stderr
    assert server.requests == []


def test_invalid_yaml_is_a_usage_error(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yml", "name: [unclosed\n")
    result = cli("apply", "-d", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: invalid YAML" in result.stderr
    assert server.requests == []


def test_invalid_json_names_line_and_column(cli: Invoke, tmp_path: Path) -> None:
    write(tmp_path / "bad.json", '{\n  "name": }')
    result = cli("apply", "-d", str(tmp_path))
    assert result.exit_code == 2
    assert "invalid JSON at line 2 column 11" in result.stderr


def test_an_empty_directory_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    result = cli("apply", "-d", str(tmp_path))
    assert result.exit_code == 2
    assert "no documents found" in result.stderr


def test_server_errors_are_reported_against_the_file(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    write(tmp_path / "a.yml", yaml.safe_dump(factories.zone("a")))
    write(tmp_path / "b.yml", yaml.safe_dump(factories.zone("b", colour="blue")))
    result = cli("apply", "-d", str(tmp_path))
    assert result.exit_code == 3
    assert f"{tmp_path / 'b.yml'}: colour: unknown field" in result.stderr
    assert server.current("zone", "a") is None


def test_dry_run_writes_nothing(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    write(tmp_path / "z.yml", yaml.safe_dump(factories.zone("blue")))
    result = cli("apply", "-d", str(tmp_path / "z.yml"), "--dry-run")
    assert result.exit_code == 0
    assert result.stdout == "created zone blue (revision 1)\n"
    assert "Dry run: nothing was written." in result.stderr
    assert server.current("zone", "blue") is None


def test_diff_shows_each_change_as_yaml(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    write(
        tmp_path / "z.yml",
        yaml.safe_dump_all(
            [
                factories.zone(params={"network": "dmz-vlan-30"}),
                factories.zone("internal", cloud_provider="", tags={}),
            ]
        ),
    )
    result = cli("apply", "-d", str(tmp_path), "--diff")
    assert result.exit_code == 0, result.output
    assert "updated zone dmz (revision 2)" in result.stdout
    assert "unchanged zone internal (revision 1)" in result.stdout
    assert "--- zone/dmz (stored)" in result.stdout
    assert "-  network: dmz-vlan-20\n+  network: dmz-vlan-30\n" in result.stdout
    assert "zone/internal" not in result.stdout.split("unchanged zone internal")[1]


def test_warnings_follow_the_result_lines(cli: Invoke, tmp_path: Path) -> None:
    write(tmp_path / "svc.yml", yaml.safe_dump(factories.service("cache", functional_requirements=["redis"])))
    result = cli("apply", "-d", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout == "created service cache (revision 1)\n"
    assert (
        f"warning: service cache ({tmp_path / 'svc.yml'}): functional_requirement 'redis' does not exist"
        in result.stderr
    )
    assert "warning" not in cli("-q", "apply", "-d", str(tmp_path)).stderr


def test_get_output_applies_back(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    exported = cli("get", "zones", "-o", "yaml").stdout
    write(tmp_path / "zones.yaml", exported)
    result = cli("apply", "-d", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "unchanged zone dmz (revision 1)",
        "unchanged zone internal (revision 1)",
    ]


def test_yaml_dates_stay_strings(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    write(tmp_path / "z.yml", "name: blue\ntype: zone\nparams:\n  since: 2025-05-01\n")
    assert cli("apply", "-d", str(tmp_path)).exit_code == 0
    assert server.current("zone", "blue") == {
        "name": "blue",
        "type": "zone",
        "params": {"since": "2025-05-01"},
    }


def test_missing_directory_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    assert cli("apply", "-d", str(tmp_path / "nope")).exit_code == 2
    assert cli("apply").exit_code == 2
