from pathlib import Path

import pytest
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer

from stackl.cli import context, exits


@pytest.fixture
def home() -> Path:
    directory = Path.home() / ".stackl"
    directory.mkdir()
    return directory


def credentials(directory: Path, token: str, mode: int = 0o600) -> None:
    path = directory / "credentials"
    path.write_text(token + "\n")
    path.chmod(mode)


def test_defaults_without_any_setting() -> None:
    connection = context.resolve(context.Options())
    assert connection == context.Connection("http://127.0.0.1:8080", None, "default", None)


def test_server_precedence(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config").write_text("  http://from-config:8080/ \n")
    assert context.resolve(context.Options()).server == "http://from-config:8080"
    assert context.resolve(context.Options()).server_source == str(home / "config")
    monkeypatch.setenv("STACKL_URL", "http://from-env:8080")
    assert context.resolve(context.Options()).server == "http://from-env:8080"
    assert context.resolve(context.Options(server="http://from-flag:1")).server == "http://from-flag:1"


def test_token_precedence(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials(home, "from-file")
    assert context.resolve(context.Options()).token == "from-file"
    monkeypatch.setenv("STACKL_TOKEN", "from-env")
    assert context.resolve(context.Options()).token == "from-env"
    resolved = context.resolve(context.Options(token="from-flag"))
    assert (resolved.token, resolved.token_source) == ("from-flag", "--token")


def test_a_token_url_in_the_0_5_config_is_split(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config").write_text("https://stackl.example.com/t/stackl_abc/")
    credentials(home, "from-file")
    resolved = context.resolve(context.Options())
    assert (resolved.server, resolved.token) == ("https://stackl.example.com", "stackl_abc")
    monkeypatch.setenv("STACKL_TOKEN", "from-env")
    assert context.resolve(context.Options()).token == "from-env"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_credentials_readable_by_others_are_refused(home: Path, mode: int) -> None:
    credentials(home, "secret", mode)
    with pytest.raises(exits.UsageFailure, match="chmod 600"):
        context.resolve(context.Options())


def test_refused_credentials_exit_2_before_any_request(cli: Invoke, server: FakeServer, home: Path) -> None:
    credentials(home, "secret", 0o644)
    result = cli("get", "zones")
    assert result.exit_code == 2
    assert "is accessible by other users (mode 0644)" in result.stderr
    assert "secret" not in result.output
    assert server.requests == []


def test_config_dir_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKL_CONFIG_DIR", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config").write_text("http://elsewhere:1")
    assert context.resolve(context.Options()).server == "http://elsewhere:1"


def test_without_a_home_directory_the_working_directory_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "missing"))
    monkeypatch.chdir(tmp_path)
    assert context.config_dir() == Path(".stackl")


def test_invalid_urls_are_usage_errors() -> None:
    assert context.normalise_url("localhost:8080") == "http://localhost:8080"
    with pytest.raises(exits.UsageFailure, match="invalid server URL"):
        context.normalise_url("ftp://host")


def test_commands_reach_the_configured_server_with_its_token(
    cli: Invoke, server: FakeServer, home: Path
) -> None:
    (home / "config").write_text("https://from-config:9443")
    credentials(home, "tok")
    assert cli("get", "zones").exit_code == 0
    request = server.requests[0]
    assert str(request.url).startswith("https://from-config:9443/documents/zone")
    assert request.headers["authorization"] == "Bearer tok"
    assert cli("--server", "http://flag:1", "--token", "t2", "get", "zones").exit_code == 0
    assert server.requests[-1].url.host == "flag"
    assert server.requests[-1].headers["authorization"] == "Bearer t2"


def test_verbose_traces_requests_with_the_token_masked(cli: Invoke) -> None:
    result = cli("-v", "--token", "s3cr3t", "get", "zones")
    assert result.exit_code == 0
    assert "> GET http://127.0.0.1:8080/documents/zone?limit=1000" in result.stderr
    assert "* token from --token" in result.stderr
    assert "Bearer ********" in result.stderr
    assert "s3cr3t" not in result.output


def test_version_option(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("stackl ")
