"""Schema migrations in code: ``stackl db upgrade``, the upgrade at server start, and the readiness check.

Alembic is driven programmatically with a ``Config`` built here (script location = the package's
``migrations`` directory, the URL in ``config.attributes``), so no alembic.ini is needed at runtime and
the installed package migrates itself. Alembic's commands are synchronous and read the revision files, so
they run in a worker thread (``asyncio.to_thread``); ``migrations/env.py`` runs its own event loop there
with an engine from ``dialects.create_engine``.
"""

import asyncio
from functools import cache
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from stackl.datastore import dialects

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
FILE_TEMPLATE = "%%(rev)s_%%(slug)s"  # versions/0002_tasks.py: pass rev_id="0002" to command.revision


def config(url: str | None = None) -> Config:
    """An Alembic Config for STACKL's migrations, optionally bound to a database URL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


@cache
def head() -> str:
    """The newest revision this code knows (reads the revision files once per process).

    Raises:
        RuntimeError: the revisions have several heads (a merge revision is missing).
    """
    heads = ScriptDirectory.from_config(config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads {heads}; add a merge revision")
    return heads[0]


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this code knows, to tell a database that is behind from one that is ahead."""
    return frozenset(script.revision for script in ScriptDirectory.from_config(config()).walk_revisions())


def current_heads(connection: Connection) -> tuple[str, ...]:
    """The revisions applied to a database, for ``AsyncConnection.run_sync`` (empty: no schema yet)."""
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; create the SQLite file's directory first.

    Raises:
        StoreUnavailable: the database cannot be reached or stays locked.
    """
    await asyncio.to_thread(_run, "upgrade", url, revision)


async def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base``: drop every table).

    Raises:
        StoreUnavailable: the database cannot be reached or stays locked.
    """
    await asyncio.to_thread(_run, "downgrade", url, revision)


def _run(direction: Literal["upgrade", "downgrade"], url: str, revision: str) -> None:
    with dialects.wrap_errors():
        if direction == "upgrade":
            dialects.ensure_sqlite_directory(url)
            command.upgrade(config(url), revision)
        else:
            command.downgrade(config(url), revision)


async def current_revision(url: str) -> tuple[str | None, str]:
    """The revision the database is at (None: empty) and the newest one this code knows.

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    latest = await asyncio.to_thread(head)
    engine = dialects.create_engine(url, pool_size=1)
    readonly = dialects.flavour(engine.dialect).transaction_options(readonly=True)
    try:
        with dialects.wrap_errors():
            async with engine.connect() as connection:
                await connection.execution_options(**readonly)
                heads = await connection.run_sync(current_heads)
    finally:
        await engine.dispose()
    return (heads[0] if heads else None), latest
