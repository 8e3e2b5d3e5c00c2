"""Migrations go up, down and up again on both databases, and end exactly at ``schema.metadata``.

Also the SQL adapter's readiness: ``ping`` refuses a database whose schema is behind, and an unreachable or
locked database is ``StoreUnavailable``, never a driver error.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from tests.integration import adapters

from stackl import errors
from stackl.datastore import dialects, migrate, schema
from stackl.datastore.sql import SqlDocumentStore


@pytest.fixture(params=adapters.SQL_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database of the given kind (a SQLite file in a directory that does not exist yet)."""
    if kind == "sqlite":
        migrated = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'stackl.db'}"
        await migrate.upgrade(migrated)
        yield migrated
    else:
        async with adapters.pg_database() as migrated:
            yield migrated


async def _inspect(url: str, look: Any) -> Any:
    engine = dialects.create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(look)
    finally:
        await engine.dispose()


def _differences(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, schema.metadata))


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


async def test_upgrade_downgrade_upgrade_ends_at_the_metadata(url: str) -> None:
    assert await migrate.current_revision(url) == (migrate.head(), migrate.head())
    assert await _inspect(url, _differences) == []

    await migrate.downgrade(url, "base")
    assert await migrate.current_revision(url) == (None, migrate.head())
    assert await _inspect(url, _tables) <= {"alembic_version"}

    await migrate.upgrade(url)
    assert await migrate.current_revision(url) == (migrate.head(), migrate.head())
    assert await _inspect(url, _tables) >= {"documents", "revisions", "doc_references"}
    assert await _inspect(url, _differences) == []


async def test_keys_sort_bytewise_whatever_the_server_locale(url: str) -> None:
    def collations(connection: sa.Connection) -> dict[str, Any]:
        return {
            c["name"]: getattr(c["type"], "collation", None)
            for c in sa.inspect(connection).get_columns("documents")
        }

    found = await _inspect(url, collations)
    expected = "C" if url.startswith("postgresql") else None  # SQLite's default BINARY is bytewise already
    assert (found["type"], found["name"]) == (expected, expected)


async def test_ping_passes_at_head_and_refuses_a_schema_behind(url: str) -> None:
    async with SqlDocumentStore(url) as store:
        await store.ping()
        await migrate.downgrade(url, "base")
        with pytest.raises(errors.StoreUnavailable, match="schema is behind: run stackl db upgrade"):
            await store.ping()
        with pytest.raises(errors.StoreUnavailable, match="schema is behind"):
            async with store.transaction(readonly=True) as tx:
                await tx.get(doc_type="service", name="web")
        await migrate.upgrade(url)
        await store.ping()


async def test_an_empty_database_reports_no_revision(tmp_path: Path) -> None:
    url = adapters.sqlite_url(tmp_path)
    assert await migrate.current_revision(url) == (None, migrate.head())


async def test_an_unreachable_database_is_store_unavailable(tmp_path: Path) -> None:
    missing_dir = f"sqlite+aiosqlite:///{tmp_path / 'absent' / 'stackl.db'}"
    closed_port = "postgresql+asyncpg://postgres@127.0.0.1:9/stackl"  # discard port: nothing listens
    for url in (missing_dir, closed_port):
        async with SqlDocumentStore(url) as store:
            with pytest.raises(errors.StoreUnavailable):
                await store.ping()
            with pytest.raises(errors.StoreUnavailable):
                async with store.transaction() as tx:
                    await tx.get(doc_type="service", name="web")
        with pytest.raises(errors.StoreUnavailable):
            await migrate.current_revision(url)


async def test_urls_without_a_driver_get_the_async_one() -> None:
    assert dialects.database_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert dialects.database_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert SqlDocumentStore("postgres://u@h/db").kind == "postgresql"
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        dialects.database_url("mysql://u@h/db")


async def test_a_sqlite_database_locked_past_the_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    url = adapters.sqlite_url(tmp_path)
    await migrate.upgrade(url)
    async with (
        SqlDocumentStore(url) as holder,
        SqlDocumentStore(url, busy_timeout_s=0.2) as waiter,
        holder.transaction() as tx,  # BEGIN IMMEDIATE: holds the write lock until the block ends
    ):
        await tx.put(doc_type="service", name="web", body={}, subject="a")
        with pytest.raises(errors.StoreUnavailable, match="locked"):
            async with waiter.transaction() as other:
                await other.get(doc_type="service", name="web")
        async with waiter.transaction(readonly=True) as reader:  # readers are not locked out
            assert await reader.get(doc_type="service", name="web") is None


async def test_a_full_disk_is_store_unavailable_and_the_store_works_again_once_space_is_back(
    tmp_path: Path,
) -> None:
    """Security round 2, defect 6: a full disk must be a retryable outage, not an error that fails a task.

    SQLite's ``max_page_count`` makes the database "full" exactly as a full disk does (``SQLITE_FULL``).
    """
    url = adapters.sqlite_url(tmp_path)
    await migrate.upgrade(url)
    limit: list[int] = []

    def cap(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {limit[0] if limit else 1073741823}")
        cursor.close()

    async with SqlDocumentStore(url) as store:
        sa.event.listen(store.engine.sync_engine.pool, "checkout", cap)
        async with store.transaction() as tx:
            await tx.put(doc_type="service", name="small", body={"x": 1}, subject="t", action="create")
        limit.append(1)  # below the current size: every write that needs a page fails, as on a full disk
        await store.engine.dispose()  # fresh connections pick the limit up at checkout
        big = {"blob": "x" * 200_000}
        with pytest.raises(errors.StoreUnavailable, match="full"):
            async with store.transaction() as tx:
                await tx.put(doc_type="service", name="big", body=big, subject="t", action="create")
        limit.clear()  # space is back
        await store.engine.dispose()
        async with store.transaction() as tx:
            await tx.put(doc_type="service", name="big", body=big, subject="t", action="create")
        async with store.transaction(readonly=True) as tx:
            assert (await tx.get(doc_type="service", name="big")) is not None
