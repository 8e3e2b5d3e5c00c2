"""The only module that knows SQLite from PostgreSQL: engines, transactions, SQL variants and driver errors.

``sql.py`` (and later the broker) writes SQLAlchemy Core once for both databases and asks this module for
whatever differs, so ``dialect.name`` is read here and nowhere else:

- **Engines.** ``create_engine`` picks the async driver (``aiosqlite``, ``asyncpg``), serialises JSON with
  ``rules.dumps`` (key order and Unicode kept), and on SQLite installs two connection events, as
  PLATFORM.md prescribes: on connect, the driver's own transaction handling is switched off
  (``isolation_level = None``) and the pragmas are set (WAL, ``busy_timeout``, ``foreign_keys``,
  ``synchronous=NORMAL``); on begin, a write transaction issues ``BEGIN IMMEDIATE`` (it takes the write lock
  at once, so two writers never both read and then fail to upgrade) and a read-only one a plain ``BEGIN``
  (WAL readers never wait). On a SQLite file, aiosqlite's connection runs its calls on the event loop's
  thread (``InlineSqlite``): only a write lock held by another process is waited for on its thread.
- **Transactions.** ``Flavour.transaction_options`` marks a transaction read-only for the begin event
  (SQLite) or for the driver (PostgreSQL ``BEGIN READ ONLY``); SQLite also serialises writers of one process
  on an asyncio lock, cheaper than SQLite's sleeping busy handler.
- **SQL variants.** ``INSERT … ON CONFLICT DO NOTHING`` and a case-sensitive substring test.
- **Queue (the broker).** ``FOR UPDATE SKIP LOCKED`` in the claim's subquery on PostgreSQL (SQLite's
  ``BEGIN IMMEDIATE`` already makes the claim exclusive); ``pg_notify`` in the enqueuing transaction and
  ``listen`` on a dedicated connection, so waiting claimers wake at commit; on SQLite the broker announces
  commits itself (``broker/wake.py``, beside the file ``sqlite_file`` names). ``without_keys`` strips a
  final item's ephemeral payload keys (``json_remove``; ``jsonb -`` on PostgreSQL).
- **Errors.** ``wrap_errors`` turns driver errors into STACKL errors: a lost race (a unique violation on
  PostgreSQL or SQLite, a serialization failure, a deadlock) into ``RevisionConflict``; an unreachable,
  locked or un-migrated database into ``StoreUnavailable``. Anything else is a bug and propagates as is.
"""

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stackl import errors
from stackl.datastore import rules

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
DEFAULT_DRIVERS = {SQLITE: "sqlite+aiosqlite", POSTGRESQL: "postgresql+asyncpg"}
READONLY_OPTION = "stackl_readonly"  # execution option read by the SQLite begin event
SCHEMA_BEHIND = "database schema is behind: run stackl db upgrade"

# PostgreSQL SQLSTATEs (appendix A of its manual).
_PG_CONFLICTS = {"23505", "40001", "40P01"}  # unique_violation, serialization_failure, deadlock_detected
_PG_SCHEMA = {"42P01", "42703"}  # undefined_table, undefined_column
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P", "3D")  # connection, resources, shutdown, unknown database
# SQLite primary result codes (sqlite3 ``sqlite_errorname`` starts with them).
_SQLITE_CONFLICTS = ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE")
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL",
                       "SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_PERM")  # fmt: skip
_SQLITE_SCHEMA = ("no such table", "no such column")


def database_url(url: str) -> sa.URL:
    """The URL with the async driver filled in when none is named (``postgresql://`` → asyncpg).

    Raises:
        ValueError: the URL names neither SQLite nor PostgreSQL.
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = POSTGRESQL
    if backend not in DEFAULT_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: STACKL runs on SQLite or PostgreSQL")
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=DEFAULT_DRIVERS[backend])
    return parsed


def backend(url: str) -> str:
    """``sqlite`` or ``postgresql``, from a URL."""
    return database_url(url).get_backend_name()


def ensure_sqlite_directory(url: str) -> None:
    """Create the parent directory of a SQLite database file (nothing for PostgreSQL or in-memory SQLite)."""
    parsed = database_url(url)
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == SQLITE
        and database not in ("", ":memory:")
        and not database.startswith("file:")
    ):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def sqlite_file(url: sa.URL | str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL, in-memory or ``file:`` URI databases."""
    parsed = sa.make_url(url) if isinstance(url, str) else url
    database = parsed.database or ""
    if parsed.get_backend_name() != SQLITE or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


_WRITE_LOCKS = frozenset({"BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"})


class _Busy(Exception):
    """Another process holds SQLite's write lock: the begin must wait for it on the connection's thread."""


class InlineSqlite(aiosqlite.Connection):
    """aiosqlite whose calls run on the caller's (event loop) thread, except a write lock that must wait.

    Why: aiosqlite hands every call (cursor, execute, fetch, close, commit) to the connection's own thread and
    back, which costs far more than the call itself: a local SQLite statement takes microseconds, the round
    trip tens of them, and on a loaded machine a GIL hand-over each way. What may take long is only waiting
    for another *process*'s write lock (``BEGIN IMMEDIATE`` in SQLite's busy handler, up to the busy timeout;
    this process's writers queue on an asyncio lock before they get here), so that alone is first tried at
    once with no busy wait and, when the lock is taken, handed to the thread to wait there. WAL readers never
    wait for a writer, and a write in a held write transaction never waits. Every call made while a handed-
    over one is pending goes to the thread too, so the connection is never used by two threads at once.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], *, busy_timeout_s: float) -> None:
        super().__init__(connector, 64)
        self._thread.daemon = True  # as SQLAlchemy sets it on the connections it makes itself
        self._busy_ms = int(busy_timeout_s * 1000)
        self._queued = 0  # calls handed to the thread and not finished

    def begin_now(self, statement: str) -> bool:
        """Begin a transaction here and now, unless that means waiting for a lock (then False: use ``_execute``).

        The transaction's begin runs on every call of the store: issued this way, it skips SQLAlchemy's
        statement execution (events, contexts) around a statement that has neither parameters nor rows.
        """
        if self._queued or not self._running or self._connection is None:
            return False
        try:
            self._now(self._connection.execute, statement)
        except _Busy:
            return False
        return True

    def _now(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a call on this thread; a write lock that is taken raises ``_Busy`` instead of waiting."""
        if not (args and args[0] in _WRITE_LOCKS):
            return fn(*args, **kwargs)
        connection = self._conn
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY":
                raise _Busy from exc
            raise
        finally:
            connection.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if self._queued == 0:
            with suppress(_Busy):
                return self._now(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()

        def queued() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:  # when the thread is done with the connection, not when a cancelled caller stops waiting
                with suppress(RuntimeError):  # the loop is closed: nobody uses the connection any more
                    loop.call_soon_threadsafe(self._unqueue)

        self._queued += 1
        return await super()._execute(queued)  # type: ignore[no-untyped-call]  # aiosqlite leaves it untyped

    def _unqueue(self) -> None:
        self._queued -= 1


def create_engine(
    url: str, *, pool_size: int = 10, busy_timeout_s: float = 30.0, foreign_keys: bool = True
) -> AsyncEngine:
    """An async engine set up for STACKL on either database; dispose of it when done.

    Args:
        url: SQLAlchemy URL; a bare ``sqlite://`` or ``postgresql://`` gets its async driver.
        pool_size: connections kept open (and the most this engine opens: no overflow).
        busy_timeout_s: SQLite: how long a writer waits for another process's write lock.
        foreign_keys: SQLite: enforce foreign keys; migrations turn this off, since batch mode rebuilds
            tables that others refer to. PostgreSQL always enforces them.
    """
    parsed = database_url(url)
    common: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": 0,
        "json_serializer": rules.dumps,
        "json_deserializer": json.loads,
    }
    if parsed.get_backend_name() != SQLITE:
        return create_async_engine(
            parsed, connect_args={"server_settings": {"application_name": "stackl"}}, **common
        )
    database = sqlite_file(parsed)
    if database is not None and not parsed.query:
        # A file database: statements run on the event loop's thread (see ``InlineSqlite``).
        def connector() -> sqlite3.Connection:
            return sqlite3.connect(database, timeout=busy_timeout_s, check_same_thread=False)

        async def inline() -> aiosqlite.Connection:
            return await InlineSqlite(connector, busy_timeout_s=busy_timeout_s)

        engine = create_async_engine(parsed, async_creator=inline, **common)
    else:
        engine = create_async_engine(parsed, connect_args={"timeout": busy_timeout_s}, **common)
    pragmas = (
        f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}",  # first: the others may wait for a lock
        "PRAGMA journal_mode = WAL",  # readers never block the writer, nor it them
        "PRAGMA synchronous = NORMAL",  # durable at checkpoints; WAL stays consistent on power loss
        f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own: _on_begin does
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        readonly = connection.get_execution_options().get(READONLY_OPTION, False)
        statement = "BEGIN" if readonly else "BEGIN IMMEDIATE"
        driver = connection.connection.driver_connection
        if not (isinstance(driver, InlineSqlite) and driver.begin_now(statement)):
            connection.exec_driver_sql(statement)

    return engine


@dataclass(frozen=True, slots=True)
class Flavour:
    """What differs between the two databases, for statements written once."""

    kind: str  # "sqlite" or "postgresql"

    @property
    def serialises_writers(self) -> bool:
        """Whether one process should queue its write transactions itself (SQLite has one writer)."""
        return self.kind == SQLITE

    def transaction_options(self, *, readonly: bool) -> dict[str, Any]:
        """Execution options to set on a connection before it begins a transaction."""
        if self.kind == SQLITE:
            return {READONLY_OPTION: readonly}
        return {"postgresql_readonly": True} if readonly else {}

    def insert_if_absent(self, table: sa.Table) -> sa.Insert:
        """``INSERT … ON CONFLICT DO NOTHING``: a lost race inserts nothing; the transaction stays usable."""
        if self.kind == SQLITE:
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    @property
    def notifies(self) -> bool:
        """Whether the database can wake listeners of other sessions (PostgreSQL ``LISTEN/NOTIFY``)."""
        return self.kind == POSTGRESQL

    def lock_for_claim(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """Skip rows other claimers hold on PostgreSQL; on SQLite, ``BEGIN IMMEDIATE`` serialises writers."""
        return select.with_for_update(skip_locked=True) if self.kind == POSTGRESQL else select

    def notify(self, channel: str, payload: str) -> sa.Select[Any] | None:
        """The statement that wakes the channel's listeners when its transaction commits (None: no NOTIFY)."""
        if self.kind != POSTGRESQL:
            return None
        return sa.select(sa.func.pg_notify(sa.literal(channel), sa.literal(payload)))

    def without_keys(self, column: sa.ColumnElement[Any], keys: tuple[str, ...]) -> sa.ColumnElement[Any]:
        """A JSON object column without the given top-level keys (PostgreSQL: through ``jsonb``)."""
        if self.kind == SQLITE:
            return sa.func.json_remove(column, *(f"$.{key}" for key in keys), type_=column.type)
        stripped: sa.ColumnElement[Any] = sa.cast(column, postgresql.JSONB)
        for key in keys:
            stripped = stripped.op("-")(sa.literal(key))
        return sa.cast(stripped, column.type)

    def contains(self, column: sa.ColumnElement[str], needle: str) -> sa.ColumnElement[bool]:
        """A case-sensitive substring test (SQLite's LIKE ignores ASCII case; needs no escaping either)."""
        position = sa.func.instr(column, needle) if self.kind == SQLITE else sa.func.strpos(column, needle)
        return position > 0


def flavour(dialect: Dialect) -> Flavour:
    """The Flavour of a connection's or engine's dialect.

    Raises:
        ValueError: neither SQLite nor PostgreSQL.
    """
    if dialect.name not in (SQLITE, POSTGRESQL):
        raise ValueError(f"unsupported database {dialect.name!r}: STACKL runs on SQLite or PostgreSQL")
    return Flavour(kind=dialect.name)


@asynccontextmanager
async def listen(
    engine: AsyncEngine, channel: str, on_notify: Callable[[str], None], on_lost: Callable[[], None]
) -> AsyncIterator[bool]:
    """Listen on ``channel`` (PostgreSQL) on a connection of its own, held until the block ends.

    ``on_notify`` receives each notification's payload on the event loop; ``on_lost`` is called if the
    connection dies (the caller then falls back to polling). Yields False, listening to nothing, on SQLite.

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    if engine.dialect.name != POSTGRESQL:
        yield False
        return

    def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        on_notify(payload)

    def terminated(_connection: Any) -> None:
        on_lost()

    with wrap_errors():
        connection = await engine.connect()
    try:
        with wrap_errors():
            raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection  # the asyncpg connection: SQLAlchemy has no LISTEN API
        await driver.add_listener(channel, notified)
        driver.add_termination_listener(terminated)
        try:
            yield True
        finally:
            if not driver.is_closed():
                driver.remove_termination_listener(terminated)
                with suppress(Exception):  # the connection may be half-dead; it is closed just below
                    await driver.remove_listener(channel, notified)
    finally:
        await connection.close()


def bytewise_text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """A string type (``Text`` without a length) that sorts bytewise on both databases, as Python sorts str.

    SQLite compares text bytewise (BINARY) already; PostgreSQL sorts by the database's locale unless the
    column says ``COLLATE "C"``, which would order ``Web`` and ``web`` differently from the fake and make
    listings depend on how the server was installed.
    """
    if length is None:
        return sa.Text().with_variant(sa.Text(collation="C"), POSTGRESQL)
    return sa.String(length).with_variant(sa.String(length, collation="C"), POSTGRESQL)


def renders_as_batch(dialect: Dialect) -> bool:
    """Whether Alembic must rebuild tables to alter them (SQLite's ALTER TABLE is too limited)."""
    return dialect.name == SQLITE


def check_foreign_keys(connection: sa.Connection) -> None:
    """After a migration on SQLite (run with foreign keys off), fail if it left a dangling foreign key.

    Raises:
        RuntimeError: rows violate a foreign key.
    """
    if connection.dialect.name == SQLITE:
        violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise RuntimeError(f"migration left {len(violations)} foreign key violations: {violations[:5]}")


def translate(exc: BaseException) -> errors.StacklError | None:
    """The STACKL error a driver or pool error means, or None when it means a bug."""
    if isinstance(exc, sa_exc.TimeoutError):
        return errors.StoreUnavailable("no database connection became free in time")
    if isinstance(exc, (OSError, TimeoutError)):  # connection refused, unknown host, connect timeout
        return errors.StoreUnavailable(f"the database cannot be reached: {exc}")
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    orig = exc.orig
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    sqlite_code = str(getattr(orig, "sqlite_errorname", None) or "")
    message = str(orig)
    if sqlstate in _PG_CONFLICTS or sqlite_code.startswith(_SQLITE_CONFLICTS):
        return errors.RevisionConflict(f"a concurrent transaction won: {message}")
    if sqlstate in _PG_SCHEMA or (sqlite_code == "SQLITE_ERROR" and message.startswith(_SQLITE_SCHEMA)):
        return errors.StoreUnavailable(f"{SCHEMA_BEHIND} ({message})")
    if (
        exc.connection_invalidated
        or sqlstate.startswith(_PG_UNAVAILABLE_CLASSES)
        or sqlite_code.startswith(_SQLITE_UNAVAILABLE)
        or isinstance(exc, sa_exc.InterfaceError)
        or (isinstance(exc, sa_exc.OperationalError) and not sqlstate and not sqlite_code)
    ):
        return errors.StoreUnavailable(f"the database is unavailable: {message}")
    return None


@contextmanager
def wrap_errors() -> Iterator[None]:
    """Raise the STACKL error a database error means (``raise … from exc``); let other errors through.

    Raises:
        RevisionConflict: a concurrent transaction wrote the same row first.
        StoreUnavailable: the database cannot be reached, stayed locked, or lacks the current schema.
    """
    try:
        yield
    except errors.StacklError:
        raise
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from exc
