"""The split-deployment flags of `stackl server` (`--no-worker`, `--no-agent`, `--agent-executor`, `--tls-*`),
their `STACKL_SERVER__*` settings, and where the CLI and the agent find a private CA (`--ca-file`,
`STACKL_CA_FILE`). The server itself is not started: `_serve` is replaced by a function that records settings.
"""

import ssl
from pathlib import Path

import pytest
import typer
from tests.pki import Pki, make_pki
from typer.testing import CliRunner, Result

from stackl.cli import context, exits
from stackl.config import Settings
from stackl.processes import agent as agent_process
from stackl.processes import server as server_process


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    for name in [n for n in __import__("os").environ if n.startswith("STACKL_")]:
        monkeypatch.delenv(name)
    seen: list[Settings] = []

    async def record(settings: Settings) -> None:
        seen.append(settings)

    monkeypatch.setattr(server_process, "_serve", record)
    return seen


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def run_server(*args: str) -> Result:
    app = typer.Typer()
    app.command()(server_process.server)
    return CliRunner().invoke(app, list(args))


def test_defaults_run_everything_in_one_process(served: list[Settings]) -> None:
    assert run_server().exit_code == 0
    (settings,) = served
    assert (settings.server.worker, settings.server.agent, settings.server.agent_executor) == (
        True,
        True,
        "local",
    )
    assert (settings.server.host, settings.server.port, settings.server.tls_cert) == ("127.0.0.1", 8080, None)


def test_flags_turn_parts_off_and_pick_the_embedded_executor(served: list[Settings]) -> None:
    result = run_server("--no-worker", "--no-agent", "--agent-executor", "mock")
    assert result.exit_code == 0, result.output
    assert (served[0].server.worker, served[0].server.agent, served[0].server.agent_executor) == (
        False,
        False,
        "mock",
    )


def test_each_flag_is_also_a_setting_and_a_flag_wins(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKL_SERVER__WORKER", "false")
    monkeypatch.setenv("STACKL_SERVER__AGENT", "false")
    monkeypatch.setenv("STACKL_SERVER__AGENT_EXECUTOR", "kubernetes")
    monkeypatch.setenv("STACKL_SERVER__HOST", "0.0.0.0")  # noqa: S104 - a bind address under test
    monkeypatch.setenv("STACKL_SERVER__PORT", "9443")
    assert run_server("--agent").exit_code == 0
    (settings,) = served
    assert (settings.server.worker, settings.server.agent) == (False, True)
    assert settings.server.agent_executor == "kubernetes"
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9443)  # noqa: S104
    assert settings.auth_enabled  # a non-loopback bind from the environment turns auth on, as a flag would


def test_an_unknown_executor_is_refused_naming_the_setting(served: list[Settings]) -> None:
    result = run_server("--agent-executor", "ssh")
    assert result.exit_code == 2
    assert "server.agent_executor" in result.output
    assert served == []


def test_tls_flags_come_in_pairs_and_name_existing_files(
    served: list[Settings], pki: Pki, tmp_path: Path
) -> None:
    alone = run_server("--tls-cert", str(pki.cert))
    assert alone.exit_code == 2
    assert "tls_cert and tls_key go together" in alone.output
    missing = run_server("--tls-cert", str(pki.cert), "--tls-key", str(tmp_path / "nope.key"))
    assert missing.exit_code == 2
    assert "server.tls_key" in missing.output
    assert "nope.key: no such file" in missing.output
    assert served == []


def test_tls_serves_https_and_the_embedded_agent_pins_the_servers_own_certificate(
    served: list[Settings], pki: Pki
) -> None:
    assert run_server("--tls-cert", str(pki.cert), "--tls-key", str(pki.key)).exit_code == 0
    (settings,) = served
    assert server_process._tls_options(settings) == {
        "ssl_certfile": str(pki.cert),
        "ssl_keyfile": str(pki.key),
    }
    context_ = server_process._loopback_tls(settings)
    assert isinstance(context_, ssl.SSLContext)
    assert context_.verify_mode == ssl.CERT_REQUIRED
    assert context_.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert not context_.check_hostname  # it dials 127.0.0.1; the certificate names the public host
    assert context_.cert_store_stats() == {"crl": 0, "x509": 1, "x509_ca": 0}  # only the server's own


def test_without_tls_nothing_changes(served: list[Settings]) -> None:
    assert run_server().exit_code == 0
    assert server_process._tls_options(served[0]) == {}
    assert server_process._loopback_tls(served[0]) is True


def test_cli_ca_file_flag_then_environment_then_system_roots(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACKL_CA_FILE", raising=False)
    assert context.ca_bundle(context.Options()) is True
    monkeypatch.setenv("STACKL_CA_FILE", str(pki.ca))
    from_env = context.ca_bundle(context.Options())
    assert isinstance(from_env, ssl.SSLContext)
    assert [c["subject"] for c in from_env.get_ca_certs()] == [((("commonName", "STACKL test CA"),),)]
    monkeypatch.setenv("STACKL_CA_FILE", str(tmp_path / "missing.pem"))
    from_flag = context.ca_bundle(context.Options(ca_file=pki.cert))  # the flag wins over the variable
    assert isinstance(from_flag, ssl.SSLContext)
    assert from_flag.cert_store_stats() == {"crl": 0, "x509": 1, "x509_ca": 0}  # the file of the flag
    with pytest.raises(exits.UsageFailure, match=r"STACKL_CA_FILE: .*missing\.pem: no such file"):
        context.ca_bundle(context.Options())


def test_agent_refuses_a_missing_ca_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKL_CA_FILE", str(tmp_path / "missing.pem"))
    app = typer.Typer()
    app.command()(agent_process.agent)
    result = CliRunner().invoke(app, ["--server", "https://stackl.example.com", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "missing.pem: no such file" in result.output
