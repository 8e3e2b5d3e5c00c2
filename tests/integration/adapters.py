"""Open every DocumentStore adapter the same way, so one contract suite runs against all of them.

``open_store(kind, tmp_path)`` yields an open, empty, migrated store: ``memory``; ``sqlite``, a file in
``tmp_path``; ``postgresql``, a fresh database cloned from a template database that ``alembic upgrade head``
built once per test session (``CREATE DATABASE … TEMPLATE`` takes a fraction of a second; migrating each
test's database would not). PostgreSQL comes from the ``PG*`` variables that ``scripts/start-postgres``
writes; when it cannot be reached the test fails, it never skips.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from stackl import errors
from stackl.datastore import migrate
from stackl.datastore.base import DocumentStore
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.datastore.sql import SqlDocumentStore
from stackl.domain.clock import Clock

KINDS = ["memory", "sqlite", "postgresql"]
SQL_KINDS = ["sqlite", "postgresql"]
UNREACHABLE = "PostgreSQL not reachable: run scripts/start-postgres"
ADMIN_DATABASE = "postgres"

# One template per pytest process: parallel sessions on one server must not drop each other's template.
_template = f"stackl_template_{uuid.uuid4().hex[:12]}"
_template_ready = False


def pg_url(dbname: str) -> str:
    """The asyncpg URL of database ``dbname`` on the server the ``PG*`` variables point at.

    Raises:
        pytest.fail.Exception: the variables are not set.
    """
    host, port = os.environ.get("PGHOST"), os.environ.get("PGPORT")
    if not host or not port:
        pytest.fail(f"{UNREACHABLE} (PGHOST/PGPORT are not set; source .pg/env)")
    url = sa.URL.create(
        "postgresql+asyncpg",
        username=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD") or None,
        host=host,
        port=int(port),
        database=dbname,
    )
    return url.render_as_string(hide_password=False)


def _admin_engine() -> AsyncEngine:
    # CREATE/DROP DATABASE cannot run inside a transaction; NullPool leaves no connection behind.
    return create_async_engine(pg_url(ADMIN_DATABASE), isolation_level="AUTOCOMMIT", poolclass=NullPool)


async def _admin(*statements: str) -> None:
    engine = _admin_engine()
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(sa.text(statement))
    except (OSError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        pytest.fail(f"{UNREACHABLE} ({exc})")
    finally:
        await engine.dispose()


async def ensure_pg_template() -> str:
    """Build this session's template database once (``alembic upgrade head``) and return its name."""
    global _template_ready  # one template per test process, built on first use
    if not _template_ready:
        await _admin(f'DROP DATABASE IF EXISTS "{_template}"', f'CREATE DATABASE "{_template}"')
        try:
            await migrate.upgrade(pg_url(_template))
        except errors.StoreUnavailable as exc:
            pytest.fail(f"{UNREACHABLE} ({exc})")
        _template_ready = True
    return _template


async def drop_pg_template() -> None:
    """Drop this session's template database, if it was built."""
    global _template_ready
    if _template_ready:
        await _admin(f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)')
        _template_ready = False


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for one test; yields its URL and drops it afterwards."""
    template = await ensure_pg_template()
    name = f"test_{uuid.uuid4().hex[:16]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield pg_url(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file in the test's temporary directory."""
    return f"sqlite+aiosqlite:///{tmp_path / 'stackl.db'}"


@asynccontextmanager
async def open_store(
    kind: str, tmp_path: Path, *, clock: Clock | None = None
) -> AsyncIterator[DocumentStore]:
    """An open, empty, migrated DocumentStore of the given kind (``memory``, ``sqlite``, ``postgresql``)."""
    if kind == "memory":
        async with InMemoryDocumentStore(clock=clock) as memory_store:
            yield memory_store
    elif kind == "sqlite":
        url = sqlite_url(tmp_path)
        await migrate.upgrade(url)
        async with SqlDocumentStore(url, clock=clock) as sqlite_store:
            yield sqlite_store
    elif kind == "postgresql":
        async with pg_database() as url, SqlDocumentStore(url, clock=clock) as pg_store:
            yield pg_store
    else:
        raise ValueError(f"unknown store kind {kind!r}: one of {KINDS}")
