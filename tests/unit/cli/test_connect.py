import stat
from pathlib import Path

import httpx
import pytest
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer

from stackl.cli import context


def stackl_dir() -> Path:
    return Path.home() / ".stackl"


def test_connect_writes_the_0_5_config_and_describes_the_server(cli: Invoke, server: FakeServer) -> None:
    result = cli("connect", "http://stackl.example.com:8080/")
    assert result.exit_code == 0, result.output
    assert (stackl_dir() / "config").read_text() == "http://stackl.example.com:8080"
    assert "Connected to http://stackl.example.com:8080: STACKL 0.1.0, auth disabled" in result.stdout
    assert str(server.requests[0].url) == "http://stackl.example.com:8080/version"
    assert not (stackl_dir() / "credentials").exists()


def test_connect_with_a_token_writes_private_credentials(cli: Invoke, server: FakeServer) -> None:
    server.token = "tok"
    result = cli("connect", "stackl.example.com", "--token", "tok")
    assert result.exit_code == 0, result.output
    path = stackl_dir() / "credentials"
    assert path.read_text() == "tok"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(stackl_dir().stat().st_mode) == 0o700
    assert (stackl_dir() / "config").read_text() == "http://stackl.example.com"
    assert "auth enabled" in result.stdout
    assert "Authenticated as alice (admin)" in result.stdout
    assert cli("get", "zones").exit_code == 0  # later commands use the saved token


def test_an_unreachable_server_is_a_warning(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(context, "TRANSPORT_FACTORY", lambda: httpx.MockTransport(refuse))
    result = cli("connect", "http://down:8080")
    assert result.exit_code == 0
    assert "warning: cannot reach the STACKL server at http://down:8080" in result.stderr
    assert (stackl_dir() / "config").read_text() == "http://down:8080"


def test_another_server_without_token_drops_the_old_credentials(cli: Invoke) -> None:
    cli("connect", "http://one:8080", "--token", "tok")
    assert cli("connect", "http://one:8080").exit_code == 0
    assert (stackl_dir() / "credentials").exists()
    result = cli("connect", "http://two:8080")
    assert result.exit_code == 0
    assert not (stackl_dir() / "credentials").exists()
    assert "its token was for http://one:8080" in result.stderr


def test_a_token_url_is_saved_as_given_for_the_0_5_cli(cli: Invoke, server: FakeServer) -> None:
    result = cli("connect", "https://stackl.example.com/t/stackl_abc")
    assert result.exit_code == 0, result.output
    assert (stackl_dir() / "config").read_text() == "https://stackl.example.com/t/stackl_abc"
    assert "stackl_abc" not in result.output
    assert str(server.requests[0].url) == "https://stackl.example.com/version"
    assert server.requests[0].headers["authorization"] == "Bearer stackl_abc"


def test_an_invalid_url_is_not_saved(cli: Invoke) -> None:
    result = cli("connect", "ftp://host")
    assert result.exit_code == 2
    assert not (stackl_dir() / "config").exists()
