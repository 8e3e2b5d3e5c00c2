"""No item is claimed twice when several processes, each with several claimers, share one database.

The contract suite proves the claim atomic between tasks of one event loop; this test proves it between
processes, where only the database orders the claims (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
``FOR UPDATE SKIP LOCKED``). Each process runs this module as ``python -m`` and reports what it claimed.
"""

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from tests.integration import adapters

from stackl.broker.base import ItemSpec
from stackl.broker.sql import SqlBroker
from stackl.datastore import migrate
from stackl.datastore.sql import SqlDocumentStore

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 300
PROCESSES = 3
CLAIMERS = 4  # per process
QUEUE = "tasks"


async def _claim_all(url: str, process: str, claimers: int) -> list[tuple[str, str, int]]:
    """Claim and complete until the queue is empty; return (item id, owner, attempt) per claim."""
    taken: list[tuple[str, str, int]] = []
    async with SqlDocumentStore(url, pool_size=claimers + 2) as store, SqlBroker(store) as broker:
        await broker.depth(QUEUE)  # connected and answering: then wait for the others (a start barrier)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("no start signal")

        async def claimer(owner: str) -> None:
            while claimed := await broker.claim(queues=[QUEUE], owner=owner, lease_s=300):
                for item in claimed:
                    taken.append((item.id, owner, item.attempt))
                    await broker.complete(item.id, owner=owner, epoch=item.lease_epoch, result=owner)

        async with asyncio.TaskGroup() as group:
            for n in range(claimers):
                group.create_task(claimer(f"{process}-{n}"))
    return taken


def main() -> None:
    url, process, claimers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    taken = asyncio.run(_claim_all(url, process, claimers))
    sys.stdout.write(json.dumps(taken) + "\n")


async def _run_processes(url: str) -> None:
    async with SqlDocumentStore(url) as store, SqlBroker(store) as broker:
        ids = {
            (await broker.enqueue(ItemSpec(queue=QUEUE, kind="k", payload={"n": n}))).id for n in range(ITEMS)
        }
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.test_broker_processes",
            url,
            f"p{n}",
            str(CLAIMERS),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(PROCESSES)
    ]
    # Every process connected before any claims: on a busy machine, a process that started first could
    # otherwise empty the queue alone, and the test would not be about several processes at all.
    for child in children:
        assert child.stdout is not None
        assert child.stderr is not None
        assert (await child.stdout.readline()).strip() == b"ready", (await child.stderr.read()).decode()
    for child in children:  # then all start at once
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    taken: list[tuple[str, str, int]] = []
    for child in children:
        out, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        taken += [(item_id, owner, attempt) for item_id, owner, attempt in json.loads(out)]

    claims = Counter(item_id for item_id, _, _ in taken)
    assert set(claims) == ids
    assert set(claims.values()) == {1}  # each item claimed exactly once …
    assert {attempt for _, _, attempt in taken} == {1}
    assert len({owner.split("-")[0] for _, owner, _ in taken}) > 1  # … by more than one process
    async with SqlDocumentStore(url) as store, SqlBroker(store) as broker:
        items = await broker.list(queue=QUEUE)
    assert len(items) == ITEMS
    assert {item.state for item in items} == {"succeeded"}
    assert {item.id: item.result for item in items} == {item_id: owner for item_id, owner, _ in taken}


@pytest.mark.timeout(180)
async def test_sqlite_processes_never_claim_an_item_twice(tmp_path: Path) -> None:
    url = adapters.sqlite_url(tmp_path)
    await migrate.upgrade(url)
    await _run_processes(url)


@pytest.mark.timeout(180)
async def test_postgresql_processes_never_claim_an_item_twice(pg_database_url: str) -> None:
    await _run_processes(pg_database_url)


if __name__ == "__main__":
    main()
