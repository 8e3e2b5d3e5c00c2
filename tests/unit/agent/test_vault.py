"""The vault secret handler against a fake Vault (an httpx transport): references, logins, renewal, failures."""

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stackl import errors
from stackl.agent import secrets
from stackl.agent.executors.base import Job, LogLine
from stackl.agent.executors.mock import MockExecutor
from stackl.agent.vault import Reference, VaultConfig, VaultHandler, parse_reference
from stackl.domain.steps import input_hash

ADDR = "https://vault.test:8200"
PASSWORD = "db-Pa55word-xyz"


@dataclass
class Clock:
    """Monotonic seconds that move only when a test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Token:
    policy: set[str]  # readable paths
    expires: float | None  # clock time; None = never
    renewable: bool = True
    ttl: float = 0.0


@dataclass
class FakeVault:
    """Just enough of Vault's HTTP API: KV v1/v2 reads, token lookup/renewal, AppRole and Kubernetes logins."""

    clock: Clock
    kv2: dict[str, dict[str, Any]] = field(default_factory=dict)
    kv1: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    approle: tuple[str, str] = ("role-1", "sid-1")
    k8s: tuple[str, str] = ("stackl-agent", "jwt-1")
    login_ttl: float = 60.0
    calls: list[str] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)
    issued: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _issue(self, policy: set[str]) -> dict[str, Any]:
        self.issued += 1
        value = f"s.issued-{self.issued}"
        self.tokens[value] = Token(policy, self.clock.now + self.login_ttl, True, self.login_ttl)
        return {"auth": {"client_token": value, "lease_duration": self.login_ttl, "renewable": True}}

    def _token(self, request: httpx.Request) -> Token | None:
        token = self.tokens.get(request.headers.get("X-Vault-Token", ""))
        if token is None or (token.expires is not None and self.clock.now >= token.expires):
            return None
        return token

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/")
        self.calls.append(f"{request.method} {path}")
        self.headers.append(request.headers)
        denied = httpx.Response(403, json={"errors": ["permission denied"]})
        if request.method == "POST" and path == "auth/approle/login":
            body = json.loads(request.content)
            if (body.get("role_id"), body.get("secret_id")) != self.approle:
                return httpx.Response(400, json={"errors": ["invalid role or secret ID"]})
            return httpx.Response(200, json=self._issue({"secret/data/infra/db", "kv/app"}))
        if request.method == "POST" and path == "auth/kubernetes/login":
            body = json.loads(request.content)
            if (body.get("role"), body.get("jwt")) != self.k8s:
                return httpx.Response(403, json={"errors": ["permission denied"]})
            return httpx.Response(200, json=self._issue({"secret/data/infra/db"}))
        token = self._token(request)
        if token is None:
            return denied
        if path == "auth/token/lookup-self":
            return httpx.Response(200, json={"data": {"ttl": token.ttl, "renewable": token.renewable}})
        if path == "auth/token/renew-self":
            token.expires = self.clock.now + self.login_ttl
            value = request.headers["X-Vault-Token"]
            return httpx.Response(
                200,
                json={"auth": {"client_token": value, "lease_duration": self.login_ttl, "renewable": True}},
            )
        if path not in token.policy:
            return denied
        if path in self.kv2:
            return httpx.Response(200, json={"data": {"data": self.kv2[path], "metadata": {"version": 1}}})
        if path in self.kv1:
            return httpx.Response(200, json={"data": self.kv1[path]})
        return httpx.Response(404, json={"errors": []})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vault(clock: Clock) -> FakeVault:
    fake = FakeVault(clock)
    fake.kv2["secret/data/infra/db"] = {"password": PASSWORD, "user": "app"}
    fake.kv1["kv/app"] = {"api_key": "k-0123456789"}
    fake.tokens["root-token"] = Token({"secret/data/infra/db", "kv/app"}, None, renewable=False)
    fake.tokens["narrow-token"] = Token({"kv/app"}, None, renewable=False)
    return fake


def token_handler(tmp_path: Path, vault: FakeVault, clock: Clock, token: str = "root-token") -> VaultHandler:  # noqa: S107
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    return VaultHandler(
        VaultConfig(addr=ADDR, token_file=token_file), transport=vault.transport(), clock=clock
    )


def approle_handler(tmp_path: Path, vault: FakeVault, clock: Clock, secret_id: str = "sid-1") -> VaultHandler:  # noqa: S107
    (tmp_path / "role-id").write_text("role-1")
    (tmp_path / "secret-id").write_text(secret_id)
    config = VaultConfig(addr=ADDR, role_id_file=tmp_path / "role-id", secret_id_file=tmp_path / "secret-id")
    return VaultHandler(config, transport=vault.transport(), clock=clock)


async def failure(handler: VaultHandler, values: dict[str, Any]) -> str:
    with pytest.raises(errors.ExecutionError) as caught:
        await handler.resolve(values)
    message = caught.value.message
    assert PASSWORD not in message
    return message


# --- references ---------------------------------------------------------------------------------------------
def test_references_name_an_engine_a_path_and_a_key() -> None:
    assert parse_reference("db", "secret/data/infra/db#password") == Reference(
        "kv2", "secret/data/infra/db", "password"
    )
    assert parse_reference("db", " kv1:/kv/app/#api_key ") == Reference("kv1", "kv/app", "api_key")


@pytest.mark.parametrize(
    "value", ["hunter22", "secret/data/db", "#key", "secret/../sys#key", "kv1:#k", "a//b#k"]
)
def test_a_value_that_is_no_reference_fails_naming_the_secret_not_the_value(value: str) -> None:
    with pytest.raises(errors.ExecutionError) as caught:
        parse_reference("db_password", value)
    assert caught.value.message.startswith("secret db_password is not a Vault reference")
    assert value not in caught.value.message


# --- configuration -------------------------------------------------------------------------------------------
def test_configuration_needs_an_address_and_exactly_one_login(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(ValueError, match="needs --vault-addr"):
        VaultConfig(addr="", token_file=token).check()
    with pytest.raises(ValueError, match="needs --vault-addr"):
        VaultConfig(addr="ftp://vault", token_file=token).check()
    with pytest.raises(ValueError, match="needs --vault-addr"):
        VaultConfig(addr="http://[::1", token_file=token).check()
    with pytest.raises(ValueError, match="exactly one login method"):
        VaultConfig(addr=ADDR).check()
    with pytest.raises(ValueError, match=r"given: --vault-token-file, --vault-k8s-role"):
        VaultConfig(addr=ADDR, token_file=token, k8s_role="r").check()
    with pytest.raises(ValueError, match="both --vault-role-id-file and --vault-secret-id-file"):
        VaultConfig(addr=ADDR, role_id_file=token).check()
    with pytest.raises(ValueError, match="does not exist"):
        VaultConfig(addr=ADDR, token_file=tmp_path / "missing").check()
    with pytest.raises(ValueError, match="does not exist"):
        VaultConfig(addr=ADDR, k8s_role="r", k8s_jwt_file=tmp_path / "no-jwt").check()
    with pytest.raises(ValueError, match="not a CA bundle"):
        VaultHandler(VaultConfig(addr=ADDR, token_file=token, ca_file=token))
    assert VaultConfig(addr=ADDR, k8s_role="r", k8s_jwt_file=token).method == "kubernetes"


async def test_handlers_by_name_and_objects(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    with pytest.raises(ValueError, match="needs its --vault-\\* options"):
        secrets.check("vault")
    with pytest.raises(ValueError, match="unknown secret handler 'conjur'"):
        secrets.check("conjur")
    handler = token_handler(tmp_path, vault, clock)
    secrets.check(handler)
    resolved = await secrets.apply(handler, {"db": "secret/data/infra/db#password"})
    assert resolved == {"db": PASSWORD}
    assert await secrets.apply("plain", {"db": "x"}) == {"db": "x"}


# --- reads ---------------------------------------------------------------------------------------------------
async def test_token_login_reads_kv2_and_kv1_keys_and_passes_other_values(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    handler = token_handler(tmp_path, vault, clock)
    values = {
        "password": "secret/data/infra/db#password",
        "user": "secret/data/infra/db#user",
        "api_key": "kv1:kv/app#api_key",
        "port": 5432,
    }
    resolved = await handler.resolve(values)
    assert resolved == {"password": PASSWORD, "user": "app", "api_key": "k-0123456789", "port": 5432}
    # One lookup of the token, one read per path (the two keys of the database secret share it).
    assert vault.calls == ["GET auth/token/lookup-self", "GET secret/data/infra/db", "GET kv/app"]
    assert all(headers["X-Vault-Token"] == "root-token" for headers in vault.headers)
    await handler.resolve(values)
    assert handler.logins == 1  # the token is kept between jobs


async def test_every_read_sees_the_current_value(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    handler = token_handler(tmp_path, vault, clock)
    assert await handler.resolve({"pw": "secret/data/infra/db#password"}) == {"pw": PASSWORD}
    vault.kv2["secret/data/infra/db"]["password"] = "rotated-Value-2"
    assert await handler.resolve({"pw": "secret/data/infra/db#password"}) == {"pw": "rotated-Value-2"}


async def test_namespace_is_sent(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    (tmp_path / "token").write_text("root-token")
    config = VaultConfig(addr=ADDR, token_file=tmp_path / "token", namespace="team-a")
    handler = VaultHandler(config, transport=vault.transport(), clock=clock)
    await handler.resolve({"pw": "secret/data/infra/db#password"})
    assert {headers["X-Vault-Namespace"] for headers in vault.headers} == {"team-a"}


async def test_a_missing_path_names_the_secret_and_the_path(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    vault.tokens["root-token"].policy.add("secret/data/infra/nope")
    message = await failure(
        token_handler(tmp_path, vault, clock), {"db_password": "secret/data/infra/nope#password"}
    )
    assert message == (
        "secret db_password: Vault path secret/data/infra/nope not found: check the path (KV v2 API paths"
        " have data/ after the mount, e.g. secret/data/infra/db; use kv1: for KV version 1)"
    )


async def test_a_missing_key_names_the_key(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    message = await failure(token_handler(tmp_path, vault, clock), {"db_password": "secret/data/infra/db#pw"})
    assert message.startswith("secret db_password: Vault path secret/data/infra/db has no key 'pw'")


async def test_a_kv1_path_read_as_kv2_says_so(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    message = await failure(token_handler(tmp_path, vault, clock), {"key": "kv/app#api_key"})
    assert (
        message
        == "secret key: kv/app is not a KV version 2 secret: use kv1: for KV version 1 and other engines"
    )


async def test_a_denied_read_names_the_path_and_the_login(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    handler = token_handler(tmp_path, vault, clock, token="narrow-token")
    message = await failure(handler, {"db_password": "secret/data/infra/db#password"})
    assert message == (
        "secret db_password: Vault denied reading secret/data/infra/db (403: permission denied): check that"
        " the policy of the agent's Vault login (token) grants read on it"
    )
    assert handler.logins == 2  # a 403 first makes the agent log in again once, in case the token expired


async def test_an_unreachable_vault_names_the_address(tmp_path: Path, clock: Clock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    (tmp_path / "token").write_text("root-token")
    config = VaultConfig(addr=ADDR, token_file=tmp_path / "token")
    handler = VaultHandler(config, transport=httpx.MockTransport(refuse), clock=clock)
    message = await failure(handler, {"db_password": "secret/data/infra/db#password"})
    assert message == (
        f"secret db_password: Vault at {ADDR} is unreachable (ConnectError: [Errno 111] Connection refused):"
        " check --vault-addr, the network and --vault-ca-file"
    )


async def test_a_revoked_token_file_says_what_to_check(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    message = await failure(
        token_handler(tmp_path, vault, clock, token="revoked"), {"db": "kv1:kv/app#api_key"}
    )
    assert message == (
        f"secret db: Vault login (token) at {ADDR} failed (403: permission denied): check the token in"
        " --vault-token-file (expired or revoked?)"
    )


# --- AppRole, Kubernetes, renewal ---------------------------------------------------------------------------
async def test_approle_login_and_a_bad_secret_id(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    handler = approle_handler(tmp_path, vault, clock)
    assert await handler.resolve({"pw": "secret/data/infra/db#password"}) == {"pw": PASSWORD}
    assert vault.calls[0] == "POST auth/approle/login"
    message = await failure(
        approle_handler(tmp_path, vault, clock, secret_id="wrong"), {"pw": "kv1:kv/app#k"}
    )
    assert message == (
        f"secret pw: Vault login (approle) at {ADDR} failed (400: invalid role or secret ID): check"
        " --vault-role-id-file and --vault-secret-id-file (has the secret id expired?)"
    )
    assert "wrong" not in message
    assert "role-1" not in message


async def test_kubernetes_login_sends_the_role_and_the_service_account_token(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    jwt = tmp_path / "jwt"
    jwt.write_text("jwt-1\n")
    config = VaultConfig(addr=ADDR, k8s_role="stackl-agent", k8s_jwt_file=jwt)
    handler = VaultHandler(config, transport=vault.transport(), clock=clock)
    assert await handler.resolve({"pw": "secret/data/infra/db#password"}) == {"pw": PASSWORD}
    assert vault.calls == ["POST auth/kubernetes/login", "GET secret/data/infra/db"]


async def test_a_token_is_renewed_past_two_thirds_of_its_lease(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    handler = approle_handler(tmp_path, vault, clock)
    await handler.resolve({"pw": "secret/data/infra/db#password"})
    clock.now += 30  # half the 60 s lease: no renewal yet
    await handler.resolve({"pw": "secret/data/infra/db#password"})
    assert handler.renewals == 0
    clock.now += 15  # three quarters
    await handler.resolve({"pw": "secret/data/infra/db#password"})
    assert (handler.renewals, handler.logins) == (1, 1)
    assert "POST auth/token/renew-self" in vault.calls


async def test_an_expired_token_means_a_new_login(tmp_path: Path, vault: FakeVault, clock: Clock) -> None:
    handler = approle_handler(tmp_path, vault, clock)
    await handler.resolve({"pw": "secret/data/infra/db#password"})
    vault.tokens.clear()  # revoked behind the agent's back: the read gets 403, the agent logs in again
    assert await handler.resolve({"pw": "secret/data/infra/db#password"}) == {"pw": PASSWORD}
    assert handler.logins == 2
    clock.now += 120  # past the whole lease: renewal is refused, so a new login
    assert await handler.resolve({"pw": "secret/data/infra/db#password"}) == {"pw": PASSWORD}
    assert handler.logins == 3


# --- in a job ------------------------------------------------------------------------------------------------
def vault_job(**invocation: Any) -> Job:
    return Job.model_validate(
        {
            "job_id": "j",
            "attempt": 1,
            "action": "create",
            "stack_instance": "si",
            "service": "web",
            "functional_requirement": "db",
            "tool": "shell",
            "invocation": {"mock_duration": 0.001, **invocation},
            "secrets": {"db_password": "secret/data/infra/db#password"},
        }
    )


async def test_a_resolved_value_is_masked_in_lines_and_outputs(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    executor = MockExecutor(secret_handler=token_handler(tmp_path, vault, clock))
    lines: list[LogLine] = []
    job = vault_job(mock_log=[f"connecting with {PASSWORD}"], mock_outputs={"dsn": f"pg://app:{PASSWORD}@db"})
    result = await executor.run(job, emit=lines.append, cancel=asyncio.Event())
    assert result.status == "READY"
    assert result.outputs == {"dsn": "pg://app:********@db"}
    assert "connecting with ********" in [line.line for line in lines]
    assert PASSWORD not in json.dumps([line.line for line in lines])


async def test_a_failed_read_fails_the_job_naming_the_secret(
    tmp_path: Path, vault: FakeVault, clock: Clock
) -> None:
    executor = MockExecutor(secret_handler=token_handler(tmp_path, vault, clock, token="narrow-token"))
    result = await executor.run(vault_job(), emit=lambda _line: None, cancel=asyncio.Event())
    assert result.status == "FAILED"
    assert result.error_message.startswith("secret db_password: Vault denied reading secret/data/infra/db")


def test_the_input_hash_covers_the_reference_not_the_value() -> None:
    key = b"k" * 32
    base = {"functional_requirement": "db", "tool": "shell", "invocation": {}, "hosts": []}
    one = input_hash({**base, "secrets": {"pw": "secret/data/infra/db#password"}}, key)
    assert one == input_hash({**base, "secrets": {"pw": "secret/data/infra/db#password"}}, key)
    assert one != input_hash({**base, "secrets": {"pw": "secret/data/infra/db2#password"}}, key)


# --- the agent command's settings ----------------------------------------------------------------------------
def test_settings_come_from_the_environment_and_flags_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackl.processes.agent import build_secret_handler

    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("STACKL_AGENT__SECRET_HANDLER", "vault")
    monkeypatch.setenv("STACKL_AGENT__VAULT_ADDR", "https://from-env:8200")
    monkeypatch.setenv("STACKL_AGENT__VAULT_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("STACKL_AGENT__VAULT_NAMESPACE", "ns-env")
    handler = build_secret_handler({"vault_addr": None})
    assert isinstance(handler, VaultHandler)
    assert (handler.config.addr, handler.config.namespace, handler.config.method) == (
        "https://from-env:8200",
        "ns-env",
        "token",
    )
    flagged = build_secret_handler({"vault_addr": "https://from-flag:8200"})
    assert flagged.config.addr == "https://from-flag:8200"
    assert build_secret_handler({"secret_handler": "base64"}) == "base64"
    monkeypatch.setenv("STACKL_AGENT__VAULT_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="STACKL_AGENT__VAULT_TIMEOUT_S: Input should be greater than 0"):
        build_secret_handler({})
