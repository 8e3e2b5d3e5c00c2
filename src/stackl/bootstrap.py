"""Composition root: picks, opens and closes the concrete adapters for a process's settings.

The only module outside the adapter packages that imports concrete adapters (checked by import-linter), so
swapping SQLite for PostgreSQL, or a fake for a real engine, is a settings change and nothing else.
"""

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stackl import errors
from stackl.broker.sql import SqlBroker
from stackl.config import Settings
from stackl.datastore import migrate
from stackl.datastore.agents_sql import SqlAgentRegistry
from stackl.datastore.audit_sql import SqlAuditLog
from stackl.datastore.encryption import SecretBox
from stackl.datastore.sql import SqlDocumentStore
from stackl.datastore.tokens_sql import SqlTokenStore
from stackl.domain.clock import Clock, SystemClock
from stackl.domain.rate_limits import TokenBuckets
from stackl.policy.base import PolicyEngine
from stackl.policy.isolated import ProcessPolicyEngine
from stackl.policy.opa import OpaPolicyEngine
from stackl.policy.rego import RegoPolicyEngine
from stackl.usecases.ports import Ports


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory (private to its owner) when the embedded SQLite default is used."""
    if not settings.database.url:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


KEY_FILE = "secret.key"


def hash_key(settings: Settings) -> bytes:
    """The server's secret key: ``secrets.key``, else a key file generated once in the data directory (0600).

    Several servers on one database must share it (set ``STACKL_SECRETS__KEY``): input hashes computed by one
    process are compared by another.
    """
    if settings.secrets.key is not None:
        return settings.secrets.key.get_secret_value().encode()
    path = settings.data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process of this server won the race
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key


async def upgrade_schema(settings: Settings) -> None:
    """Apply pending migrations to the configured database.

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    prepare_data_dir(settings)
    await migrate.upgrade(settings.database_url)


async def require_current_schema(settings: Settings) -> None:
    """Refuse to run on a database whose schema is not this version's (processes that never migrate).

    Raises:
        StoreUnavailable: the database cannot be reached or its schema is behind or ahead.
    """
    current, head = await migrate.current_revision(settings.database_url)
    if current != head:
        raise errors.StoreUnavailable(f"database schema is at {current}, not {head}: run stackl db upgrade")


def policy_engine(settings: Settings, *, purpose: str = "") -> PolicyEngine:
    """The policy engine ``STACKL_POLICY__ENGINE`` names: real OPA (default) or the embedded regopy.

    Each call builds an engine with its own ``STACKL_POLICY__THREADS`` threads; ``purpose`` names them
    (``stackl-opa-authz``).
    """
    suffix = f"-{purpose}" if purpose else ""
    if settings.policy.engine == "regopy":
        return RegoPolicyEngine(max_workers=settings.policy.threads, name=f"stackl-rego{suffix}")
    return OpaPolicyEngine(max_workers=settings.policy.threads, name=f"stackl-opa{suffix}")


@asynccontextmanager
async def open_ports(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Ports]:
    """Open every adapter the settings ask for, yield them as Ports, close them on exit.

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    clock = clock or SystemClock()
    prepare_data_dir(settings)
    key = hash_key(settings)
    box = SecretBox(key)  # its own HKDF subkey: the raw key stays the input-hash HMAC key
    store = SqlDocumentStore(
        settings.database_url,
        clock=clock,
        pool_size=settings.database.pool_size,
        busy_timeout_s=settings.database.busy_timeout_s,
        secret_box=box,
    )
    policies = policy_engine(settings)
    # Authorization gets an engine of its own: policy evaluations that overrun hold their engine's threads
    # (neither engine can be interrupted), and every request waits for its access decision.
    authz_policies = policy_engine(settings, purpose="authz")
    # Users' ad-hoc evaluations run in worker processes that are killed when they overrun their time or memory.
    evaluation_policies = ProcessPolicyEngine(
        engine=settings.policy.engine,
        processes=settings.policy.evaluation_processes,
        memory_mb=settings.policy.evaluation_memory_mb,
    )
    try:
        async with store, SqlBroker(store, clock=clock) as broker:
            yield Ports(
                store=store,
                broker=broker,
                policies=policies,
                authz_policies=authz_policies,
                evaluation_policies=evaluation_policies,
                agents=SqlAgentRegistry(store),
                clock=clock,
                write_retries=settings.database.write_retries,
                policy_timeout_s=settings.policy.timeout_s,
                task_max_attempts=settings.tasks.max_lease_expiries + 1,
                task_timeout_s=settings.tasks.timeout_s,
                rollback=settings.tasks.rollback,
                hash_key=key,
                tokens=SqlTokenStore(store),
                audit=SqlAuditLog(store),
                secret_box=box,
                evaluation_limits=TokenBuckets(
                    per_minute=settings.policy.evaluations_per_minute, burst=settings.policy.evaluation_burst
                ),
            )
    finally:
        policies.close()
        authz_policies.close()
        evaluation_policies.close()
