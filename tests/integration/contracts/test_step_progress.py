"""The step-progress part of the DocumentStore contract (datastore/base.py), run against every adapter.

Progress rows are written beside a document without a revision, applied by reads (``get``, ``get_many``,
``list``), held and deleted by the next ``put`` (what its read applied), deleted with the document, and never
shown by ``history``/``revision``.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.clocks import ManualClock
from tests.integration import adapters

from stackl import errors
from stackl.datastore.base import DocumentStore, ListQuery

SI = "stack_instance"
START = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


@pytest.fixture(params=adapters.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    async with adapters.open_store(kind, tmp_path, clock=ManualClock(START, tick_s=1.0)) as opened:
        yield opened


def instance(status: str = "in_progress", task_id: str = "t1") -> dict[str, Any]:
    return {
        "name": "si",
        "services": {"web": [{"infrastructure_target": "e.l.z", "outputs": {}}]},
        "status": [
            {
                "service": "web",
                "replica": 0,
                "functional_requirement": "fr",
                "status": status,
                "task_id": task_id,
            },
            {
                "service": "db",
                "replica": 0,
                "functional_requirement": "fr",
                "status": status,
                "task_id": task_id,
            },
        ],
    }


async def put(store: DocumentStore, body: dict[str, Any], **kwargs: Any) -> Any:
    async with store.transaction() as tx:
        return await tx.put(doc_type=SI, name="si", body=body, subject="alice", **kwargs)


async def progress(store: DocumentStore, key: str, entry: dict[str, Any]) -> int:
    async with store.transaction() as tx:
        return await tx.put_progress(doc_type=SI, name="si", key=key, entry=entry)


def statuses(body: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in body["status"]]


async def test_reads_apply_progress_without_a_revision(store: DocumentStore) -> None:
    await put(store, instance())
    first = await progress(
        store, "web/0/fr", {"task_id": "t1", "status": {"status": "READY", "job_id": "j1"}}
    )
    second = await progress(
        store,
        "db/0/fr",
        {
            "task_id": "t1",
            "status": {"status": "READY"},
            "step_id": "db-0-fr",
            "record": {"outputs": {"ip": "10.0.0.1"}, "input_hash": "h"},
            "outputs": {"ip": "10.0.0.1"},
            "alias": "web",
            "index": 0,
        },
    )
    assert second > first
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type=SI, name="si")
        many = await tx.get_many(keys=[(SI, "si")])
        listed = await tx.list(ListQuery(types=[SI]))
        history = await tx.history(doc_type=SI, name="si")
        rows = await tx.progress(doc_type=SI, name="si")
    assert got is not None
    assert got.revision == 1
    assert got.progress_seq == second
    assert statuses(got.body) == ["READY", "READY"]
    assert got.body["status"][0]["job_id"] == "j1"
    assert got.body["steps"] == {"db-0-fr": {"outputs": {"ip": "10.0.0.1"}, "input_hash": "h"}}
    assert got.body["instance_outputs"] == {"ip": "10.0.0.1"}
    assert got.body["services"]["web"][0]["outputs"] == {"ip": "10.0.0.1"}
    assert many[(SI, "si")] == got
    assert listed.items == [got]
    assert [e.revision for e in history.items] == [1]
    assert history.items[0].body == instance()  # revisions are stored as written
    assert [(r.key, r.seq, r.revision) for r in rows] == [("web/0/fr", first, 1), ("db/0/fr", second, 1)]


async def test_a_step_keeps_one_row_and_seq_grows(store: DocumentStore) -> None:
    await put(store, instance())
    first = await progress(
        store, "web/0/fr", {"task_id": "t1", "status": {"status": "in_progress", "job_id": "j"}}
    )
    second = await progress(store, "web/0/fr", {"task_id": "t1", "status": {"status": "FAILED"}})
    assert second > first
    async with store.transaction(readonly=True) as tx:
        rows = await tx.progress(doc_type=SI, name="si")
        got = await tx.get(doc_type=SI, name="si")
    assert [(r.key, r.seq) for r in rows] == [("web/0/fr", second)]
    assert rows[0].entry == {"task_id": "t1", "status": {"status": "FAILED"}}
    assert got is not None
    assert statuses(got.body) == ["FAILED", "in_progress"]


async def test_a_put_holds_and_deletes_what_its_read_applied(store: DocumentStore) -> None:
    await put(store, instance())
    await progress(store, "web/0/fr", {"task_id": "t1", "status": {"status": "READY"}})
    async with store.transaction() as tx:
        current = await tx.get(doc_type=SI, name="si")
        assert current is not None
        written = await tx.put(doc_type=SI, name="si", body=current.body, subject="worker", action="status")
    # Equal to what was read, yet a revision: it now holds the progress, whose rows went.
    assert written.action == "updated"
    assert written.document.revision == 2
    async with store.transaction(readonly=True) as tx:
        assert await tx.progress(doc_type=SI, name="si") == []
        got = await tx.get(doc_type=SI, name="si")
        second = await tx.revision(doc_type=SI, name="si", revision=2)
    assert got is not None
    assert (got.revision, got.progress_seq) == (2, 0)
    assert statuses(got.body) == ["READY", "in_progress"]
    assert second.body == got.body


async def test_a_write_in_the_same_transaction_sees_its_own_progress(store: DocumentStore) -> None:
    await put(store, instance())
    async with store.transaction() as tx:
        before = await tx.get(doc_type=SI, name="si")
        seq = await tx.put_progress(
            doc_type=SI, name="si", key="db/0/fr", entry={"status": {"status": "READY"}}
        )
        after = await tx.get(doc_type=SI, name="si")
    assert before is not None
    assert after is not None
    assert statuses(before.body) == ["in_progress", "in_progress"]
    assert statuses(after.body) == ["in_progress", "READY"]
    assert after.progress_seq == seq


async def test_removed_entries_leave_the_body(store: DocumentStore) -> None:
    body = instance()
    body["steps"] = {"web-0-fr": {"outputs": {}, "input_hash": "h"}}
    await put(store, body)
    await progress(store, "web/0/fr", {"task_id": "t1", "removed": True, "step_id": "web-0-fr"})
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type=SI, name="si")
    assert got is not None
    assert [e["service"] for e in got.body["status"]] == ["db"]
    assert got.body["steps"] == {}


async def test_delete_deletes_the_rows_and_progress_needs_a_document(store: DocumentStore) -> None:
    await put(store, instance())
    await progress(store, "web/0/fr", {"status": {"status": "READY"}})
    async with store.transaction() as tx:
        await tx.delete(doc_type=SI, name="si", subject="alice")
    async with store.transaction(readonly=True) as tx:
        assert await tx.progress(doc_type=SI, name="si") == []
    with pytest.raises(errors.DocumentNotFound):
        await progress(store, "web/0/fr", {"status": {"status": "READY"}})
    async with store.transaction() as tx:
        with pytest.raises(errors.DocumentNotFound):
            await tx.put_progress(doc_type=SI, name="nobody", key="web/0/fr", entry={})
    await put(store, instance())  # re-created: no progress of its former life
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type=SI, name="si")
    assert got is not None
    assert (got.progress_seq, statuses(got.body)) == (0, ["in_progress", "in_progress"])


async def test_a_failed_transaction_leaves_no_progress(store: DocumentStore) -> None:
    await put(store, instance())

    async def fails() -> None:
        async with store.transaction() as tx:
            await tx.put_progress(
                doc_type=SI, name="si", key="web/0/fr", entry={"status": {"status": "READY"}}
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fails()
    async with store.transaction(readonly=True) as tx:
        assert await tx.progress(doc_type=SI, name="si") == []


async def test_readonly_transactions_refuse_progress(store: DocumentStore) -> None:
    await put(store, instance())
    async with store.transaction(readonly=True) as tx:
        with pytest.raises(RuntimeError, match="read-only"):
            await tx.put_progress(doc_type=SI, name="si", key="web/0/fr", entry={})


async def test_version_follows_revisions_and_progress(store: DocumentStore) -> None:
    async with store.transaction(readonly=True) as tx:
        assert await tx.version(doc_type=SI, name="si") is None
    await put(store, instance())
    async with store.transaction(readonly=True) as tx:
        assert await tx.version(doc_type=SI, name="si") == (1, 0)
    seq = await progress(store, "web/0/fr", {"status": {"status": "READY"}})
    async with store.transaction(readonly=True) as tx:
        assert await tx.version(doc_type=SI, name="si") == (1, seq)
        got = await tx.get(doc_type=SI, name="si")
    assert got is not None
    assert (got.revision, got.progress_seq) == (1, seq)  # equal versions, equal reads
    async with store.transaction() as tx:
        current = await tx.get(doc_type=SI, name="si")
        assert current is not None
        await tx.put(doc_type=SI, name="si", body=current.body, subject="worker")
    async with store.transaction(readonly=True) as tx:
        assert await tx.version(doc_type=SI, name="si") == (2, 0)
    async with store.transaction() as tx:
        await tx.delete(doc_type=SI, name="si", subject="alice")
    async with store.transaction(readonly=True) as tx:
        assert await tx.version(doc_type=SI, name="si") is None
