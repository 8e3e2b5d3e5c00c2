"""The SQLite connections of the store and broker run statements on the loop's thread (``InlineSqlite``).

What must hold: a write transaction that has to wait for another connection's write lock waits on the
connection's own thread (the event loop keeps serving), then gets the lock; reads and writes otherwise work.
"""

import asyncio
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from stackl.datastore import dialects


async def test_statements_run_inline_and_a_taken_write_lock_is_awaited_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = dialects.create_engine(f"sqlite+aiosqlite:///{path}", busy_timeout_s=5)
    writer = engine.execution_options(**dialects.Flavour(kind="sqlite").transaction_options(readonly=False))
    try:
        async with writer.connect() as connection:
            raw = await connection.get_raw_connection()
            assert isinstance(raw.driver_connection, dialects.InlineSqlite)
            await connection.begin()
            await connection.execute(sa.text("CREATE TABLE t (a INTEGER)"))
            await connection.commit()

        other = sqlite3.connect(path, isolation_level=None)  # another "process" takes the write lock
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def write() -> int:
            async with writer.connect() as connection:
                await connection.begin()
                await connection.execute(sa.text("INSERT INTO t VALUES (2)"))
                count = (await connection.execute(sa.text("SELECT count(*) FROM t"))).scalar_one()
                await connection.commit()
                return int(count)

        beat = asyncio.create_task(ticker())
        started = time.monotonic()
        waiting = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits for the lock ...
        assert ticks >= 10  # ... and the loop keeps running meanwhile
        other.execute("COMMIT")
        assert await waiting == 2
        assert time.monotonic() - started < 5
        beat.cancel()
        other.close()
        async with writer.connect() as connection:  # the connection is usable inline again afterwards
            await connection.begin()
            await connection.execute(sa.text("INSERT INTO t VALUES (3)"))
            await connection.commit()
            assert (await connection.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 3
    finally:
        await engine.dispose()
