"""The DocumentStore contract (datastore/base.py, spec/documents.md §2.6), run against every adapter."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.clocks import ManualClock
from tests.integration import adapters

from stackl import errors
from stackl.datastore import migrate
from stackl.datastore.base import DocumentStore, ListQuery, Reference, Referrer
from stackl.datastore.sql import SqlDocumentStore

START = datetime(2025, 5, 1, 10, 15, 30, 123456, tzinfo=UTC)
CONCURRENT_WRITERS = 20
WRITE_ATTEMPTS = 200  # per writer; PostgreSQL writers may lose many races before winning one


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves one second forward each time it is read."""
    return ManualClock(START, tick_s=1.0)


@pytest.fixture(params=adapters.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    # Sync on purpose: only a sync fixture can pull the async session fixture in for one parameter, so
    # the memory and SQLite runs do not need PostgreSQL.
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[DocumentStore]:
    async with adapters.open_store(kind, tmp_path, clock=clock) as opened:
        yield opened


async def put(store: DocumentStore, doc_type: str, name: str, body: dict[str, Any], **kwargs: Any) -> Any:
    async with store.transaction() as tx:
        return await tx.put(
            doc_type=doc_type, name=name, body=body, subject=kwargs.pop("subject", "alice"), **kwargs
        )


async def delete(store: DocumentStore, doc_type: str, name: str, **kwargs: Any) -> int:
    async with store.transaction() as tx:
        return await tx.delete(doc_type=doc_type, name=name, subject=kwargs.pop("subject", "alice"), **kwargs)


# --- create, read, revisions --------------------------------------------------------------------------------
async def test_create_then_get(store: DocumentStore) -> None:
    result = await put(store, "service", "web", {"name": "web", "params": {"port": 80}})
    assert result.action == "created"
    assert result.document.revision == 1
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type="service", name="web")
        assert await tx.get(doc_type="service", name="db") is None
    assert got == result.document
    assert got is not None
    assert got.body == {"name": "web", "params": {"port": 80}}
    assert (got.created_by, got.updated_by) == ("alice", "alice")


async def test_revisions_increment_and_keep_creation(store: DocumentStore) -> None:
    first = await put(store, "service", "web", {"v": 1})
    second = await put(store, "service", "web", {"v": 2}, subject="bob")
    third = await put(store, "service", "web", {"v": 3}, subject="carol")
    assert [first.action, second.action, third.action] == ["created", "updated", "updated"]
    assert third.document.revision == 3
    assert (third.document.created_at, third.document.created_by) == (first.document.created_at, "alice")
    assert third.document.updated_by == "carol"
    assert third.document.updated_at > second.document.updated_at > first.document.updated_at


async def test_unchanged_write_is_a_noop(store: DocumentStore) -> None:
    first = await put(store, "service", "web", {"a": 1, "b": {"c": [1, 2]}})
    again = await put(store, "service", "web", {"a": 1, "b": {"c": [1, 2]}}, subject="bob")
    assert again.action == "unchanged"
    assert again.document == first.document
    history = await _history(store, "service", "web")
    assert [e.revision for e in history] == [1]


async def test_other_key_order_is_a_new_revision(store: DocumentStore) -> None:
    await put(store, "service", "web", {"a": 1, "b": 2})
    result = await put(store, "service", "web", {"b": 2, "a": 1})
    assert (result.action, result.document.revision) == ("updated", 2)
    assert list(result.document.body) == ["b", "a"]


async def test_delete_leaves_a_tombstone_and_recreation_continues_numbering(store: DocumentStore) -> None:
    await put(store, "service", "web", {"v": 1})
    await put(store, "service", "web", {"v": 2})
    assert await delete(store, "service", "web", subject="bob") == 3
    async with store.transaction(readonly=True) as tx:
        assert await tx.get(doc_type="service", name="web") is None
        assert await tx.get_many(keys=[("service", "web")]) == {}
        assert await tx.count(doc_type="service") == 0
        assert (await tx.list(ListQuery(types=("service",)))).items == []
    again = await put(store, "service", "web", {"v": 1}, subject="carol")
    assert (again.action, again.document.revision) == ("created", 4)
    assert (again.document.created_by, again.document.updated_by) == ("carol", "carol")
    assert [e.action for e in await _history(store, "service", "web")] == [
        "create",
        "delete",
        "update",
        "create",
    ]


async def test_delete_of_a_missing_or_deleted_document_is_not_found(store: DocumentStore) -> None:
    with pytest.raises(errors.DocumentNotFound):
        await delete(store, "service", "web")
    await put(store, "service", "web", {})
    await delete(store, "service", "web")
    with pytest.raises(errors.DocumentNotFound):
        await delete(store, "service", "web")


# --- history ------------------------------------------------------------------------------------------------
async def _history(store: DocumentStore, doc_type: str, name: str) -> list[Any]:
    async with store.transaction(readonly=True) as tx:
        return (await tx.history(doc_type=doc_type, name=name)).items


async def test_history_is_newest_first_with_actions_subjects_tasks_and_restores(store: DocumentStore) -> None:
    await put(store, "stack_instance", "shop", {"v": 1})
    await put(
        store,
        "stack_instance",
        "shop",
        {"v": 1, "status": "ok"},
        action="status",
        task_id="T1",
        subject="system",
    )
    await put(store, "stack_instance", "shop", {"v": 2})
    await put(store, "stack_instance", "shop", {"v": 1}, action="restore", restored_from=1, subject="bob")
    await delete(store, "stack_instance", "shop", subject="carol", task_id="T2")
    entries = await _history(store, "stack_instance", "shop")
    assert [(e.revision, e.action, e.subject) for e in entries] == [
        (5, "delete", "carol"),
        (4, "restore", "bob"),
        (3, "update", "alice"),
        (2, "status", "system"),
        (1, "create", "alice"),
    ]
    assert [(e.task_id, e.restored_from) for e in entries] == [
        ("T2", None),
        (None, 1),
        (None, None),
        ("T1", None),
        (None, None),
    ]
    assert [e.body for e in entries] == [None, {"v": 1}, {"v": 2}, {"v": 1, "status": "ok"}, {"v": 1}]
    assert all(e.time.tzinfo is UTC for e in entries)
    assert [e.time for e in entries] == sorted((e.time for e in entries), reverse=True)


async def test_history_pages_cover_everything_once(store: DocumentStore) -> None:
    for v in range(7):
        await put(store, "service", "web", {"v": v})
    seen: list[int] = []
    cursor = None
    async with store.transaction(readonly=True) as tx:
        while True:
            page = await tx.history(doc_type="service", name="web", limit=3, cursor=cursor)
            assert len(page.items) <= 3
            seen += [e.revision for e in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == [7, 6, 5, 4, 3, 2, 1]


async def test_history_and_revision_of_an_unknown_document_are_not_found(store: DocumentStore) -> None:
    async with store.transaction(readonly=True) as tx:
        with pytest.raises(errors.DocumentNotFound):
            await tx.history(doc_type="service", name="ghost")
        with pytest.raises(errors.DocumentNotFound):
            await tx.revision(doc_type="service", name="ghost", revision=1)


async def test_revision_returns_old_bodies_and_a_bodiless_tombstone(store: DocumentStore) -> None:
    await put(store, "service", "web", {"v": 1})
    await put(store, "service", "web", {"v": 2})
    await delete(store, "service", "web")
    async with store.transaction(readonly=True) as tx:
        first = await tx.revision(doc_type="service", name="web", revision=1)
        tombstone = await tx.revision(doc_type="service", name="web", revision=3)
        with pytest.raises(errors.RevisionNotFound):
            await tx.revision(doc_type="service", name="web", revision=4)
    assert (first.action, first.body) == ("create", {"v": 1})
    assert (tombstone.action, tombstone.body) == ("delete", None)


# --- preconditions ------------------------------------------------------------------------------------------
async def test_stale_if_revision_is_a_failed_precondition(store: DocumentStore) -> None:
    await put(store, "service", "web", {"v": 1})
    await put(store, "service", "web", {"v": 2})
    with pytest.raises(errors.PreconditionFailed) as caught:
        await put(store, "service", "web", {"v": 3}, if_revision=1)
    assert caught.value.current_revision == 2
    with pytest.raises(errors.PreconditionFailed) as on_delete:
        await delete(store, "service", "web", if_revision=1)
    assert on_delete.value.current_revision == 2
    assert (await put(store, "service", "web", {"v": 3}, if_revision=2)).document.revision == 3
    assert await delete(store, "service", "web", if_revision=3) == 4


async def test_if_revision_on_an_absent_document_fails(store: DocumentStore) -> None:
    with pytest.raises(errors.PreconditionFailed) as caught:
        await put(store, "service", "web", {"v": 1}, if_revision=1)
    assert caught.value.current_revision is None


async def test_create_only_refuses_an_existing_document(store: DocumentStore) -> None:
    await put(store, "service", "web", {"v": 1}, create_only=True)
    with pytest.raises(errors.AlreadyExists) as caught:
        await put(store, "service", "web", {"v": 2}, create_only=True)
    assert (caught.value.doc_type, caught.value.name) == ("service", "web")
    await delete(store, "service", "web")
    assert (await put(store, "service", "web", {"v": 3}, create_only=True)).document.revision == 3


async def test_must_exist_refuses_an_absent_document(store: DocumentStore) -> None:
    with pytest.raises(errors.DocumentNotFound) as caught:
        await put(store, "service", "web", {"v": 1}, must_exist=True)
    assert (caught.value.doc_type, caught.value.name) == ("service", "web")
    await put(store, "service", "web", {"v": 1})
    assert (await put(store, "service", "web", {"v": 2}, must_exist=True)).action == "updated"


async def test_readonly_transactions_refuse_writes(store: DocumentStore) -> None:
    async with store.transaction(readonly=True) as tx:
        with pytest.raises(RuntimeError, match="read-only"):
            await tx.put(doc_type="service", name="web", body={}, subject="alice")
        with pytest.raises(RuntimeError, match="read-only"):
            await tx.delete(doc_type="service", name="web", subject="alice")


# --- references ---------------------------------------------------------------------------------------------
async def test_references_are_recorded_replaced_and_cleared(store: DocumentStore) -> None:
    fr = Reference(to_type="functional_requirement", to_name="linux", path="functional_requirements[0]")
    fr2 = Reference(to_type="functional_requirement", to_name="nginx", path="functional_requirements[1]")
    await put(store, "service", "web", {"v": 1}, references=[fr, fr2, fr])
    await put(store, "service", "db", {"v": 1}, references=[fr])
    async with store.transaction(readonly=True) as tx:
        assert await tx.referrers(doc_type="functional_requirement", name="linux") == [
            Referrer(type="service", name="db", path="functional_requirements[0]"),
            Referrer(type="service", name="web", path="functional_requirements[0]"),
        ]
        assert await tx.referrers(doc_type="functional_requirement", name="nginx") == [
            Referrer(type="service", name="web", path="functional_requirements[1]")
        ]
    await put(store, "service", "web", {"v": 2}, references=[fr2])
    await delete(store, "service", "db")
    async with store.transaction(readonly=True) as tx:
        assert await tx.referrers(doc_type="functional_requirement", name="linux") == []
        assert await tx.referrers(doc_type="functional_requirement", name="nginx") == [
            Referrer(type="service", name="web", path="functional_requirements[1]")
        ]


async def test_references_written_in_a_transaction_are_visible_in_it(store: DocumentStore) -> None:
    ref = Reference(to_type="service", to_name="web", path="services[0].service")
    async with store.transaction() as tx:
        await tx.put(
            doc_type="stack_application_template", name="shop", body={}, subject="a", references=[ref]
        )
        assert await tx.referrers(doc_type="service", name="web") == [
            Referrer(type="stack_application_template", name="shop", path="services[0].service")
        ]


# --- listings and counts ------------------------------------------------------------------------------------
async def _seed(store: DocumentStore) -> None:
    async with store.transaction() as tx:
        keys = [("zone", "z1"), ("service", "web"), ("service", "Web2"), ("service", "db")]
        keys += [("location", "brussels"), ("service", "webcache"), ("snapshot", "s1")]
        for doc_type, name in keys:
            body = (
                {"name": name, "source": {"type": "service", "name": "web"}} if doc_type == "snapshot" else {}
            )
            await tx.put(doc_type=doc_type, name=name, body=body, subject="a")
        await tx.put(
            doc_type="snapshot", name="s2", body={"source": {"type": "service", "name": "db"}}, subject="a"
        )
        await tx.put(doc_type="snapshot", name="s3", body={"source": {"type": 1, "name": "web"}}, subject="a")


async def _names(store: DocumentStore, query: ListQuery) -> list[tuple[str, str]]:
    async with store.transaction(readonly=True) as tx:
        return [(d.type, d.name) for d in (await tx.list(query)).items]


async def test_list_is_sorted_and_filters_by_type_name_and_body_members(store: DocumentStore) -> None:
    await _seed(store)
    await delete(store, "service", "db")
    everything = await _names(store, ListQuery())
    assert everything == sorted(everything)
    assert len(everything) == 8
    assert await _names(store, ListQuery(types=("service", "zone"))) == [
        ("service", "Web2"),
        ("service", "web"),
        ("service", "webcache"),
        ("zone", "z1"),
    ]
    assert await _names(store, ListQuery(name_contains="web")) == [
        ("service", "web"),
        ("service", "webcache"),
    ]
    assert await _names(store, ListQuery(name_contains="eb2")) == [("service", "Web2")]
    source = {"source.type": "service", "source.name": "web"}
    assert await _names(store, ListQuery(extra=source)) == [("snapshot", "s1")]
    assert await _names(store, ListQuery(types=("snapshot",), extra={"source.name": "db"})) == [
        ("snapshot", "s2")
    ]
    with pytest.raises(errors.Malformed):
        await _names(store, ListQuery(extra={"source.type": 1}))


async def test_list_pages_are_complete_and_ordered(store: DocumentStore) -> None:
    async with store.transaction() as tx:
        for i in range(23):
            await tx.put(
                doc_type="service" if i % 2 else "zone", name=f"n{i:02d}", body={"i": i}, subject="a"
            )
    expected = await _names(store, ListQuery())
    for limit in (1, 5, 23, 50):
        collected: list[tuple[str, str]] = []
        cursor = None
        async with store.transaction(readonly=True) as tx:
            while True:
                page = await tx.list(ListQuery(limit=limit, cursor=cursor))
                assert 0 < len(page.items) <= limit
                collected += [(d.type, d.name) for d in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        assert collected == expected
    assert len(expected) == 23


async def test_bad_cursors_and_limits_are_malformed(store: DocumentStore) -> None:
    await put(store, "service", "web", {})
    history_cursor = None
    for v in range(3):
        await put(store, "service", "web", {"v": v})
    async with store.transaction(readonly=True) as tx:
        history_cursor = (await tx.history(doc_type="service", name="web", limit=1)).next_cursor
        assert history_cursor is not None
        for cursor in ["%%%", "bm90IGpzb24", "WzEsMl0", history_cursor]:
            with pytest.raises(errors.Malformed):
                await tx.list(ListQuery(cursor=cursor))
        with pytest.raises(errors.Malformed):
            await tx.history(doc_type="service", name="web", cursor="WyJkIiwiYSIsImIiXQ")
        with pytest.raises(errors.Malformed):
            await tx.list(ListQuery(limit=0))


async def test_get_many_returns_only_current_documents(store: DocumentStore) -> None:
    await _seed(store)
    await delete(store, "service", "db")
    keys = [("service", "web"), ("service", "db"), ("zone", "z1"), ("zone", "nowhere"), ("service", "web")]
    async with store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=keys)
        assert await tx.get_many(keys=[]) == {}
    assert set(found) == {("service", "web"), ("zone", "z1")}
    assert found[("zone", "z1")].name == "z1"


async def test_count_counts_current_documents_of_one_type(store: DocumentStore) -> None:
    await _seed(store)
    await delete(store, "service", "db")
    async with store.transaction(readonly=True) as tx:
        assert await tx.count(doc_type="service") == 3
        assert await tx.count(doc_type="zone") == 1
        assert await tx.count(doc_type="environment") == 0


# --- transactions -------------------------------------------------------------------------------------------
class BoomError(Exception):
    pass


async def test_a_failing_transaction_leaves_nothing_behind(store: DocumentStore) -> None:
    await put(store, "service", "kept", {"v": 1})
    ref = Reference(to_type="functional_requirement", to_name="linux", path="functional_requirements[0]")

    async def fail_midway() -> None:
        async with store.transaction() as tx:
            await tx.put(doc_type="service", name="web", body={"v": 1}, subject="a", references=[ref])
            await tx.put(doc_type="service", name="kept", body={"v": 2}, subject="a")
            await tx.delete(doc_type="service", name="kept", subject="a")
            assert await tx.get(doc_type="service", name="web") is not None
            raise BoomError

    with pytest.raises(BoomError):
        await fail_midway()
    async with store.transaction(readonly=True) as tx:
        assert await tx.get(doc_type="service", name="web") is None
        kept = await tx.get(doc_type="service", name="kept")
        assert kept is not None
        assert (kept.revision, kept.body) == (1, {"v": 1})
        assert await tx.referrers(doc_type="functional_requirement", name="linux") == []
        assert [e.revision for e in (await tx.history(doc_type="service", name="kept")).items] == [1]
        with pytest.raises(errors.DocumentNotFound):
            await tx.history(doc_type="service", name="web")
    # The numbering is not burnt by the rolled-back attempt.
    assert (await put(store, "service", "web", {"v": 1})).document.revision == 1


async def test_writes_are_visible_inside_their_transaction(store: DocumentStore) -> None:
    async with store.transaction() as tx:
        await tx.put(doc_type="service", name="web", body={"v": 1}, subject="a")
        second = await tx.put(doc_type="service", name="web", body={"v": 2}, subject="a")
        assert second.document.revision == 2
        assert [d.name for d in (await tx.list(ListQuery(types=("service",)))).items] == ["web"]
        assert await tx.count(doc_type="service") == 1
        assert [e.revision for e in (await tx.history(doc_type="service", name="web")).items] == [2, 1]


# --- bodies and times ---------------------------------------------------------------------------------------
async def test_key_order_of_nested_maps_is_preserved(store: DocumentStore) -> None:
    body = {"z": 1, "policies": {"zeta": {"b": 1, "a": 2}, "alpha": [{"y": 1, "x": 2}]}, "a": None}
    await put(store, "stack_application_template", "shop", body)
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type="stack_application_template", name="shop")
        old = await tx.revision(doc_type="stack_application_template", name="shop", revision=1)
    assert got is not None
    for read in (got.body, old.body):
        assert read is not None
        assert list(read) == ["z", "policies", "a"]
        assert list(read["policies"]) == ["zeta", "alpha"]
        assert list(read["policies"]["zeta"]) == ["b", "a"]
        assert list(read["policies"]["alpha"][0]) == ["y", "x"]


async def test_unicode_and_json_values_are_preserved(store: DocumentStore) -> None:
    body = {
        "description": "Brüssel ☃ 東京 \U0001f680",
        "ключ": "значение",
        "n": [0, -1, 2.5, 10**15, True, None],
    }
    await put(store, "environment", "prod", body)
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type="environment", name="prod")
    assert got is not None
    assert got.body == body
    assert got.body["n"][4] is True


async def test_returned_bodies_are_copies(store: DocumentStore) -> None:
    body: dict[str, Any] = {"tags": {"a": "1"}}
    result = await put(store, "zone", "z1", body)
    body["tags"]["b"] = "2"
    result.document.body["tags"]["c"] = "3"
    async with store.transaction(readonly=True) as tx:
        got = await tx.get(doc_type="zone", name="z1")
    assert got is not None
    assert got.body == {"tags": {"a": "1"}}


async def test_timestamps_are_aware_utc_from_the_clock(store: DocumentStore, clock: ManualClock) -> None:
    created = (await put(store, "zone", "z1", {"v": 1})).document
    updated = (await put(store, "zone", "z1", {"v": 2})).document
    async with store.transaction(readonly=True) as tx:
        read = await tx.get(doc_type="zone", name="z1")
        entries = (await tx.history(doc_type="zone", name="z1")).items
    assert read == updated
    assert read is not None
    assert created.created_at == START + timedelta(seconds=1)
    assert updated.updated_at == clock.moment
    for moment in (read.created_at, read.updated_at, *(e.time for e in entries)):
        assert moment.tzinfo is UTC
        assert moment.microsecond == START.microsecond


async def test_ping_and_kind(store: DocumentStore, kind: str) -> None:
    await store.ping()
    assert store.kind == kind


# --- concurrency --------------------------------------------------------------------------------------------
async def _add_owner(store: DocumentStore, i: int) -> None:
    """Read the instance, add owner ``w<i>``, write it back; start again after losing a race."""
    for _ in range(WRITE_ATTEMPTS):
        try:
            async with store.transaction() as tx:
                current = await tx.get(doc_type="stack_instance", name="shop")
                assert current is not None
                await asyncio.sleep(0)  # let the others read the same revision
                body = {"owners": {**current.body["owners"], f"w{i}": i}}
                await tx.put(doc_type="stack_instance", name="shop", body=body, subject=f"w{i}")
            return
        except errors.RevisionConflict:
            await asyncio.sleep(0)
    raise AssertionError(f"writer {i} never won")


async def test_concurrent_read_modify_writes_lose_no_update(store: DocumentStore) -> None:
    await put(store, "stack_instance", "shop", {"owners": {}})
    async with asyncio.TaskGroup() as group:
        for i in range(CONCURRENT_WRITERS):
            group.create_task(_add_owner(store, i))
    async with store.transaction(readonly=True) as tx:
        final = await tx.get(doc_type="stack_instance", name="shop")
        history = (await tx.history(doc_type="stack_instance", name="shop")).items
    assert final is not None
    assert final.body["owners"] == {f"w{i}": i for i in range(CONCURRENT_WRITERS)}
    assert final.revision == CONCURRENT_WRITERS + 1
    assert [e.revision for e in history] == list(range(CONCURRENT_WRITERS + 1, 0, -1))


async def test_concurrent_creates_of_one_key_have_exactly_one_winner(store: DocumentStore) -> None:
    async def create(i: int) -> str:
        for _ in range(WRITE_ATTEMPTS):
            try:
                async with store.transaction() as tx:
                    await asyncio.sleep(0)
                    await tx.get(doc_type="service", name="web")
                    await asyncio.sleep(0)
                    await tx.put(
                        doc_type="service", name="web", body={"by": i}, subject=f"w{i}", create_only=True
                    )
                return "created"
            except errors.AlreadyExists:
                return "exists"
            except errors.RevisionConflict:
                await asyncio.sleep(0)
        raise AssertionError(f"creator {i} never finished")

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(create(i)) for i in range(2)]
    assert sorted(t.result() for t in tasks) == ["created", "exists"]
    async with store.transaction(readonly=True) as tx:
        assert [e.revision for e in (await tx.history(doc_type="service", name="web")).items] == [1]


@pytest.fixture
async def pg_store(pg_database_url: str) -> AsyncIterator[DocumentStore]:
    async with SqlDocumentStore(pg_database_url) as opened:
        yield opened


async def test_a_write_based_on_a_stale_read_is_a_revision_conflict(pg_store: DocumentStore) -> None:
    # Only PostgreSQL lets two write transactions overlap; SQLite and the fake queue them.
    await put(pg_store, "service", "web", {"v": 1})
    async with pg_store.transaction() as slow:
        seen = await slow.get_many(keys=[("service", "web"), ("service", "db")])  # reads without a hold
        assert set(seen) == {("service", "web")}
        await put(pg_store, "service", "web", {"v": 2}, subject="fast")
        await put(pg_store, "service", "db", {"v": 1}, subject="fast")
        with pytest.raises(errors.RevisionConflict):
            await slow.put(doc_type="service", name="web", body={"v": 3}, subject="slow")
        with pytest.raises(errors.RevisionConflict):
            await slow.delete(doc_type="service", name="web", subject="slow")
        with pytest.raises(errors.RevisionConflict):  # the insert of a key it saw absent
            await slow.put(doc_type="service", name="db", body={"v": 9}, subject="slow")
    async with pg_store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=[("service", "web"), ("service", "db")])
    assert {k: (d.revision, d.body, d.updated_by) for k, d in found.items()} == {
        ("service", "web"): (2, {"v": 2}, "fast"),
        ("service", "db"): (1, {"v": 1}, "fast"),
    }


async def test_get_in_a_write_transaction_holds_the_document_until_commit(pg_store: DocumentStore) -> None:
    await put(pg_store, "service", "web", {"v": 1})
    async with pg_store.transaction() as first:
        current = await first.get(doc_type="service", name="web")
        assert current is not None
        second = asyncio.create_task(put(pg_store, "service", "web", {"v": "second"}, subject="second"))
        await asyncio.sleep(0.3)
        assert not second.done()  # queued behind the first writer's hold, not failed
        await first.put(doc_type="service", name="web", body={"v": "first"}, subject="first")
    result = await asyncio.wait_for(second, timeout=10)
    assert result.document.revision == 3
    async with pg_store.transaction(readonly=True) as tx:
        history = await tx.history(doc_type="service", name="web")
    assert [entry.subject for entry in history.items][:2] == ["second", "first"]


@pytest.fixture(params=adapters.SQL_KINDS)
def sql_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")  # see ``kind``
    return str(request.param)


@pytest.fixture
async def shared_url(sql_kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if sql_kind == "sqlite":
        url = adapters.sqlite_url(tmp_path)
        await migrate.upgrade(url)
        yield url
    else:
        async with adapters.pg_database() as url:
            yield url


async def test_two_stores_on_one_database_lose_no_update(shared_url: str) -> None:
    # Two stores stand for two processes: on SQLite they meet at BEGIN IMMEDIATE and the busy timeout,
    # not at one store's in-process queue.
    async with SqlDocumentStore(shared_url) as first, SqlDocumentStore(shared_url) as second:
        await put(first, "stack_instance", "shop", {"owners": {}})

        async with asyncio.TaskGroup() as group:
            for i in range(CONCURRENT_WRITERS):
                group.create_task(_add_owner(first if i % 2 else second, i))
        async with second.transaction(readonly=True) as tx:
            final = await tx.get(doc_type="stack_instance", name="shop")
    assert final is not None
    assert final.body["owners"] == {f"w{i}": i for i in range(CONCURRENT_WRITERS)}
    assert final.revision == CONCURRENT_WRITERS + 1


async def test_readers_and_writers_do_not_wait_for_each_other(store: DocumentStore) -> None:
    await put(store, "service", "web", {"v": 1})
    async with store.transaction(readonly=True) as reader:
        assert await reader.get(doc_type="service", name="web") is not None
        async with asyncio.timeout(10):
            await put(store, "service", "web", {"v": 2})  # a writer while a reader is open
    async with store.transaction() as writer:
        await writer.put(doc_type="service", name="web", body={"v": 3}, subject="a")
        async with asyncio.timeout(10), store.transaction(readonly=True) as reader:
            current = await reader.get(doc_type="service", name="web")  # a reader while a writer is open
    assert current is not None
    assert current.body == {"v": 2}  # the open writer's change is not visible before it commits


# --- host-name counters ---------------------------------------------------------------------------------------
async def test_counters_grow_commit_with_the_transaction_and_never_go_back(store: DocumentStore) -> None:
    async with store.transaction(readonly=True) as tx:
        assert await tx.counters(["app"]) == {}
    async with store.transaction() as tx:
        await tx.set_counters({"app": 8002, "web pool": 3})
    async with store.transaction() as tx:
        assert await tx.counters(["app", "web pool", "nope"]) == {"app": 8002, "web pool": 3}
        await tx.set_counters({"app": 8001})  # never decremented

    async def rolled_back() -> None:
        async with store.transaction() as tx:
            await tx.set_counters({"app": 9000})
            raise BoomError

    with pytest.raises(BoomError):
        await rolled_back()
    async with store.transaction(readonly=True) as tx:
        assert await tx.counters(["app"]) == {"app": 8002}
        with pytest.raises(RuntimeError):  # a programming error, as for put in a read-only transaction
            await tx.set_counters({"app": 1})
