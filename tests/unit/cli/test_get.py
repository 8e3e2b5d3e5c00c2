import json
from typing import Any

import pytest
import yaml
from tests import factories
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import TIME, FakeServer

from stackl.cli import get, output


def lines(text: str) -> list[list[str]]:
    return [line.split("   ") for line in text.splitlines()]


def test_zones_table_lists_every_page(cli: Invoke, server: FakeServer) -> None:
    server.seed(factories.zone("a"), factories.zone("b"))
    result = cli("get", "zones")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["NAME", "CLOUD", "PROVIDER", "AGENT", "TAGS", "REVISION", "UPDATED"]
    assert [r.split()[0] for r in rows[1:]] == ["a", "b", "dmz", "internal"]
    assert "network=dmz" in rows[3]
    assert len(server.requests) == 2  # two pages of two


@pytest.mark.parametrize(
    ("kind", "header", "row"),
    [
        ("environment", "NAME", "production"),
        ("sit", "TARGET", "main   production.brussels.dmz"),
        ("sat", "SERVICES", "web_shop   web=webserver"),
        ("services", "FUNCTIONAL REQUIREMENTS", "webserver   vm"),
        ("functional_requirement", "INVOCATIONS", "vm     generic:terraform   false"),
        ("policy-templates", "RULES", "allowed_registries   infringement"),
        ("instance", "STATUS", "READY 1/1"),
        ("stack_instances", "SERVICES", "web\u00d71"),
    ],
)
def test_every_kind_has_its_table(cli: Invoke, kind: str, header: str, row: str) -> None:
    result = cli("get", kind)
    assert result.exit_code == 0, result.output
    assert header in result.stdout.splitlines()[0]
    assert row in result.stdout


def test_one_document_as_yaml_round_trips(cli: Invoke) -> None:
    result = cli("get", "zone", "dmz", "-o", "yaml")
    assert result.exit_code == 0
    doc = yaml.safe_load(result.stdout)
    assert doc["name"] == "dmz"
    assert doc["metadata"]["revision"] == 1
    assert doc["params"] == {"network": "dmz-vlan-20"}


def test_list_as_json_and_names(cli: Invoke) -> None:
    as_json = json.loads(cli("get", "zone", "-o", "json").stdout)
    assert [z["name"] for z in as_json] == ["dmz", "internal"]
    single = json.loads(cli("get", "zone", "dmz", "-o", "json").stdout)
    assert single["name"] == "dmz"
    assert cli("get", "zones", "-o", "name").stdout == "zone/dmz\nzone/internal\n"


def test_multi_line_policy_is_a_yaml_block(cli: Invoke) -> None:
    result = cli("get", "policy-template", "allowed_registries", "-o", "yaml")
    assert "policy: |\n  package allowed_registries\n" in result.stdout


def test_not_found_exits_4(cli: Invoke) -> None:
    result = cli("get", "zone", "nope")
    assert result.exit_code == 4
    assert "Error: zone 'nope' not found" in result.stderr
    assert result.stdout == ""


def test_unknown_kind_is_a_usage_error(cli: Invoke, server: FakeServer) -> None:
    result = cli("get", "gadgets")
    assert result.exit_code == 2
    assert "unknown kind 'gadgets'" in result.stderr
    assert server.requests == []


def test_empty_list_says_so_on_stderr(cli: Invoke) -> None:
    result = cli("get", "snapshots")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No snapshot found." in result.stderr


def test_snapshot_forms(cli: Invoke, server: FakeServer) -> None:
    created = cli("create", "snapshot", "sat", "web_shop", "--name", "before")
    assert created.stdout == "before\n"
    cli("create", "snapshot", "zone", "dmz", "--name", "other")
    of_document = cli("get", "snapshots", "sat", "web_shop")
    assert of_document.exit_code == 0, of_document.output
    assert of_document.stdout.splitlines()[1:] == [
        "before   stack_application_template/web_shop@1   " + output.local_time(TIME) + "   local"
    ]
    as_json = json.loads(
        cli("get", "snapshots", "stack_application_template", "web_shop", "-o", "json").stdout
    )
    assert [(s["name"], s["source"]["revision"]) for s in as_json] == [("before", 1)]
    one = cli("get", "snapshot", "before")
    assert "stack_application_template/web_shop@1" in one.stdout
    assert "local" in one.stdout
    assert cli("get", "snapshots", "a", "b", "c").exit_code == 2


def test_too_many_names_is_a_usage_error(cli: Invoke) -> None:
    assert cli("get", "zone", "a", "b").exit_code == 2


def test_tables_on_a_terminal_use_rich(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_table(["NAME", "AGENT"], [["dmz", "bru-agent"]], terminal=True, no_color=True)
    out = capsys.readouterr().out
    assert "NAME" in out
    assert "bru-agent" in out


def test_plain_table_aligns_without_trailing_spaces() -> None:
    assert output.plain_table(["A", "LONGER"], [["wide-cell", ""], ["x", "y"]]) == [
        "A           LONGER",
        "wide-cell",
        "x           y",
    ]


def test_local_time_of_api_times() -> None:
    assert output.local_time("") == ""
    assert output.local_time(None) == ""
    assert output.local_time("not a time") == "not a time"
    assert len(output.local_time("2025-05-01T10:15:30.123Z")) == len("2025-05-01 10:15:30")


def test_snapshots_of_a_document_are_exact_and_newest_first() -> None:
    def snap(name: str, source: str, created: str) -> dict[str, Any]:
        return {"name": name, "source": {"type": "zone", "name": source}, "metadata": {"created_at": created}}

    found = get.snapshots_of(
        [
            snap("old", "dmz", "2025-01-01T00:00:00Z"),
            snap("new", "dmz", "2025-02-01T00:00:00Z"),
            snap("x", "dmz2", ""),
        ],
        "zone",
        "dmz",
    )
    assert [s["name"] for s in found] == ["new", "old"]
