"""Alembic environment of STACKL's one schema: async, batch mode on SQLite, metadata from ``schema``.

``migrate.py`` runs Alembic in code: it passes the database URL as ``config.attributes["url"]`` (no
alembic.ini exists at runtime) and calls the command in a worker thread, where this module runs its own
event loop with an engine from ``dialects.create_engine``, so migrations get the same SQLite pragmas and
transactions as the server. A caller that already holds a synchronous connection may pass it as
``config.attributes["connection"]`` instead (Alembic's cookbook recipe for sharing a connection).

On SQLite, the engine made here runs migrations with foreign keys off, as batch mode rebuilds tables that
other tables refer to, and ``dialects.check_foreign_keys`` verifies the result before the upgrade commits.
Every upgrade is one transaction on both databases.
"""

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection

from stackl.datastore import dialects, schema

MIGRATION_BUSY_TIMEOUT_S = 60.0  # a migration may wait this long for a running server's write to end

config = context.config
target_metadata = schema.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass config.attributes['url'] or set sqlalchemy.url")
    return str(url)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Autogenerate renders ``UtcDateTime`` as the column type it is, so revisions do not import the app."""
    if type_ == "type" and isinstance(obj, schema.UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations (``alembic upgrade --sql``) instead of running it."""
    url = dialects.database_url(_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == dialects.SQLITE,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=dialects.renders_as_batch(connection.dialect),
        render_item=render_item,
        compare_type=True,
        # SQLite DDL is transactional too once the driver leaves BEGIN to us (dialects.create_engine), so
        # an upgrade is all or nothing on both databases, not one transaction per revision.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        dialects.check_foreign_keys(connection)


async def _run_async(url: str) -> None:
    engine = dialects.create_engine(
        url, pool_size=1, busy_timeout_s=MIGRATION_BUSY_TIMEOUT_S, foreign_keys=False
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_on)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new async engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    # migrate.py calls Alembic in a worker thread, so this thread has no running loop of its own.
    asyncio.run(_run_async(_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
