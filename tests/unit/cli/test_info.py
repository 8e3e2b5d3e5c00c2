import json

from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer


def test_info_shows_server_version_database_auth_and_identity(cli: Invoke) -> None:
    result = cli("info")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "server:   http://127.0.0.1:8080 (from default)",
        "host:     fake-host",
        "version:  0.1.0 (api 1, compat 0.5)",
        "database: sqlite",
        "auth:     disabled",
        "token:    none",
        "subject:  local (admin)",
    ]


def test_info_as_json(cli: Invoke) -> None:
    facts = json.loads(cli("info", "-o", "json").stdout)
    assert facts["host"] == "fake-host"
    assert facts["roles"] == ["admin"]


def test_a_server_without_whoami(cli: Invoke, server: FakeServer) -> None:
    server.whoami = False
    result = cli("info")
    assert result.exit_code == 0
    assert "subject:  unknown (the server has no /auth/whoami)" in result.stdout


def test_a_refused_token_prints_what_is_known_then_exits_6(cli: Invoke, server: FakeServer) -> None:
    server.token = "right"
    result = cli("--token", "wrong", "info")
    assert result.exit_code == 6
    assert "auth:     enabled" in result.stdout
    assert "subject:  not authenticated" in result.stdout
    assert "Error: Authentication required" in result.stderr
    assert "hint: give a token" in result.stderr
