"""SQLite wake-ups across processes (broker/wake.py): an enqueue in one process wakes a waiter in another.

The waiting broker polls only every 120 s here, so a ``wait`` that returns within the test's deadline was
woken by the datagram, not by its poll. The enqueuing side runs as ``python -m`` of this module.
"""

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

from stackl.broker.base import ItemSpec
from stackl.broker.sql import SqlBroker
from stackl.broker.wake import WakeChannel, directory_for
from stackl.datastore import migrate
from stackl.datastore.sql import SqlDocumentStore

ROOT = Path(__file__).resolve().parents[3]
Q = "agent:bru"
SLOW: dict[str, Any] = {"poll_interval_s": 120.0, "listen_poll_s": 120.0}


async def _enqueue(url: str, queue: str) -> None:
    async with SqlDocumentStore(url) as store, SqlBroker(store) as broker:
        await broker.enqueue(ItemSpec(queue=queue, kind="job"))


def main() -> None:
    asyncio.run(_enqueue(sys.argv[1], sys.argv[2]))


async def _database(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stackl.db'}"
    await migrate.upgrade(url)
    return url


async def test_an_enqueue_in_another_process_wakes_the_waiter(tmp_path: Path) -> None:
    url = await _database(tmp_path)
    async with SqlDocumentStore(url) as store, SqlBroker(store, **SLOW) as broker:
        waiter = asyncio.create_task(broker.wait(queues=[Q], timeout_s=300))
        await asyncio.sleep(0.2)  # the waiter looked, found nothing, and sleeps on its 120 s poll
        assert not waiter.done()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.contracts.test_broker_wake", url, Q, cwd=ROOT
        )
        assert await child.wait() == 0
        async with asyncio.timeout(30):  # a deadline far below the poll, not a timing
            assert await waiter is True


async def test_a_wake_up_for_another_queue_does_not_end_the_wait(tmp_path: Path) -> None:
    url = await _database(tmp_path)
    async with SqlDocumentStore(url) as store, SqlBroker(store, **SLOW) as broker:
        waiter = asyncio.create_task(broker.wait(queues=[Q], timeout_s=1.5))
        await asyncio.sleep(0.2)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.contracts.test_broker_wake", url, "other", cwd=ROOT
        )
        assert await child.wait() == 0
        assert await waiter is False


async def test_an_enqueue_in_a_caller_transaction_wakes_after_its_commit(tmp_path: Path) -> None:
    url = await _database(tmp_path)
    async with (
        SqlDocumentStore(url) as store,
        SqlBroker(store, **SLOW) as producer,
        SqlBroker(store, **SLOW) as consumer,
    ):
        waiter = asyncio.create_task(consumer.wait(queues=[Q], timeout_s=300))
        await asyncio.sleep(0.2)
        async with store.transaction() as tx:
            await producer.enqueue(ItemSpec(queue=Q, kind="job"), tx=tx)
            await asyncio.sleep(0.2)  # not committed yet: nothing to wake for
            assert not waiter.done()
        async with asyncio.timeout(30):
            assert await waiter is True


async def test_a_socket_left_by_a_dead_process_is_removed_by_its_sender(tmp_path: Path) -> None:
    database = tmp_path / "stackl.db"
    directory = directory_for(database)
    directory.mkdir(mode=0o700)
    stale = directory / "1-dead"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(stale))  # closed at once: nobody reads it any more
    heard: list[str] = []
    channel = WakeChannel(database, heard.append)
    assert channel.open()
    try:
        channel.send({Q})
        assert not stale.exists()
    finally:
        channel.close()
    assert list(directory.iterdir()) == []


if __name__ == "__main__":
    main()
