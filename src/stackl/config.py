"""Settings of every STACKL process, read once from STACKL_* environment variables.

Nested groups (``STACKL_DATABASE__URL``, ``STACKL_SERVER__PORT``) keep related knobs together; defaults are the
embedded setup (SQLite in the data directory, auth off on loopback), so nothing needs setting. Nothing here is
instantiated at import time: a process command builds ``Settings()`` once, CLI flags as init keyword arguments.
This is the only module that reads ``os.environ``.
"""

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """The server-side data directory when none is configured: ``~/.stackl/data``."""
    return Path(os.path.expanduser("~")) / ".stackl" / "data"


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    """The API process."""

    host: str = Field("127.0.0.1", description="bind address; a non-loopback address requires auth")
    port: int = Field(8080, ge=0, le=65535, description="TCP port of the API and UI")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="request body limit (413 beyond)")
    max_document_bytes: int = Field(1024 * 1024, ge=1024, description="one document's JSON size limit (413)")
    request_deadline_s: float = Field(60.0, gt=0, le=600, description="non-long-poll request deadline (503)")
    body_read_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a request body may pause this long between chunks (408 beyond)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="seconds a connection has to send a request's headers, then closed"
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=600, description="an idle keep-alive connection is closed after this many seconds"
    )
    max_connections: int = Field(
        1000, ge=1, le=100_000, description="open connections at once; more get 503 and are closed"
    )
    max_header_bytes: int = Field(
        16384, ge=1024, le=1024 * 1024, description="request line + headers size limit (400 beyond)"
    )
    worker: bool = Field(True, description="run the worker loop in the server process")
    agent: bool = Field(True, description="run the embedded agent 'common' in the server process")
    agent_executor: Literal["local", "docker", "kubernetes", "mock"] = Field(
        "local", description="executor of the embedded agent 'common'"
    )
    upgrade: bool = Field(True, description="apply schema migrations at start")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) to serve HTTPS; needs tls_key")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")

    @model_validator(mode="after")
    def _tls_pair(self) -> "ServerSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self


class WorkerSettings(BaseModel):
    """The worker loop that runs tasks (``stackl worker``, or inside the server)."""

    concurrency: int = Field(4, ge=1, le=256, description="tasks one worker process runs at once")
    lease_s: float = Field(
        30.0, ge=0.3, le=3600, description="task lease in seconds; heartbeats renew it every lease_s / 3"
    )
    shutdown_timeout_s: float = Field(
        10.0, ge=0, le=3600, description="graceful stop: seconds to let running tasks finish before release"
    )
    reconcile_s: float = Field(
        300.0,
        ge=1,
        le=86400,
        description="how often a worker marks FAILED the steps left in_progress by a task that has ended",
    )


class TaskSettings(BaseModel):
    """Server-side operations (tasks)."""

    max_lease_expiries: int = Field(
        5, ge=1, le=100, description="worker leases a task may lose before it fails (worker lost N times)"
    )
    timeout_s: float = Field(7200.0, gt=0, description="a task's deadline, from its start")
    rollback: bool = Field(False, description="roll back failed creates and updates unless the request says")


class DatabaseSettings(BaseModel):
    """The one SQL database (documents, revisions, tasks, jobs)."""

    url: str = Field("", description="SQLAlchemy URL; empty = SQLite file stackl.db in the data directory")
    pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections per process")
    busy_timeout_s: float = Field(30.0, gt=0, description="SQLite: how long a writer waits for the lock")
    write_retries: int = Field(5, ge=1, le=100, description="read-modify-write attempts before a 409")


class AuthSettings(BaseModel):
    """API tokens and the authorization policy."""

    enabled: bool | None = Field(None, description="None = off on a loopback bind, on otherwise")
    insecure: bool = Field(False, description="allow a non-loopback bind without auth (explicit opt-out)")
    token_path_prefix: bool = Field(
        False,
        description="accept /t/<token>/ in front of a path (for the 0.5 client; short-lived tokens only)",
    )
    ui_session_idle_s: float = Field(
        3600.0,
        ge=60,
        le=7 * 24 * 3600,
        description="a web UI session ends after this many seconds without a request (sign in again)",
    )
    ui_session_max_s: float = Field(
        12 * 3600.0,
        ge=60,
        le=30 * 24 * 3600,
        description="a web UI session ends this many seconds after sign-in, however active",
    )


class LoggingSettings(BaseModel):
    """Log level and format."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="minimum level")
    format: Literal["auto", "console", "json"] = Field("auto", description="auto = console on a terminal")


class PolicySettings(BaseModel):
    """The Rego engine that runs policy templates (docs/policies.md)."""

    engine: Literal["opa", "regopy"] = Field(
        "opa", description="opa: real OPA in-process (default); regopy: the embedded rego-cpp engine"
    )
    timeout_s: float = Field(5.0, gt=0, le=300, description="limit of one policy evaluation (422 beyond)")
    threads: int = Field(4, ge=1, le=64, description="evaluation threads, each with its own interpreters")
    evaluation_processes: int = Field(
        2, ge=1, le=32, description="processes that run POST /policies/evaluate (killed when a call overruns)"
    )
    evaluation_memory_mb: int = Field(
        512, ge=192, le=1024 * 1024, description="memory limit of one evaluation process, engine included"
    )
    evaluations_per_minute: int = Field(
        60, ge=1, le=100_000, description="POST /policies/evaluate calls one subject may make a minute (429)"
    )
    evaluation_burst: int = Field(
        10, ge=1, le=10_000, description="POST /policies/evaluate calls one subject may make at once"
    )


class SecretSettings(BaseModel):
    """Encryption of secrets at rest."""

    key: SecretStr | None = Field(None, description="encryption key; none = generated key file in data dir")


class Settings(BaseSettings):
    """Everything a STACKL process can be told; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="STACKL_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, description="server-side data directory")
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    tasks: TaskSettings = TaskSettings()
    auth: AuthSettings = AuthSettings()
    logging: LoggingSettings = LoggingSettings()
    policy: PolicySettings = PolicySettings()
    secrets: SecretSettings = SecretSettings()

    @model_validator(mode="after")
    def _refuse_open_bind_without_auth(self) -> "Settings":
        if self.auth.enabled is False and not is_loopback(self.server.host) and not self.auth.insecure:
            raise ValueError(
                f"refusing to serve {self.server.host} without authentication: enable auth or pass --insecure"
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        """Auth is on when set, else on for any non-loopback bind."""
        if self.auth.enabled is not None:
            return self.auth.enabled
        return not is_loopback(self.server.host)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in use: the configured one, else the SQLite file in the data directory."""
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'stackl.db'}"


class AgentSettings(BaseSettings):
    """The ``stackl agent`` process's secret handler and Vault options (``STACKL_AGENT__*``; flags win).

    Built by the agent command only (the server's ``Settings`` ignores these variables); docs/security.md.
    """

    model_config = SettingsConfigDict(env_prefix="STACKL_AGENT__", extra="ignore")

    secret_handler: str = Field("plain", description="plain, base64 or vault")
    vault_addr: str = Field("", description="Vault/OpenBao address, e.g. https://vault.example.com:8200")
    vault_token_file: Path | None = Field(None, description="token login: file holding a Vault token")
    vault_role_id_file: Path | None = Field(None, description="AppRole login: file holding the role id")
    vault_secret_id_file: Path | None = Field(None, description="AppRole login: file holding the secret id")
    vault_approle_mount: str = Field("approle", description="mount path of the AppRole auth method")
    vault_k8s_role: str | None = Field(None, description="Kubernetes login: the Vault role")
    vault_k8s_jwt_file: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        description="Kubernetes login: the service account token file",
    )
    vault_k8s_mount: str = Field("kubernetes", description="mount path of the Kubernetes auth method")
    vault_ca_file: Path | None = Field(None, description="CA bundle that signs Vault's TLS certificate")
    vault_namespace: str | None = Field(None, description="Vault namespace (X-Vault-Namespace)")
    vault_timeout_s: float = Field(10.0, gt=0, le=300, description="seconds one Vault request may take")
