"""No change without its audit entry, and ``/readyz`` that notices a store refusing writes (issue 15, defect 10).

The attacks: with the database down, mutating requests lost their audit entries (9 in the probe), the failed
write only logged; and ``/readyz`` said ready while the disk was full. Now an audited change writes its entry
before it runs and fails (503, nothing changed) when it cannot; ``/readyz`` commits a small write.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs
from tests.unit.hiccups import HiccupStore

from stackl import errors
from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.audit import AuditEntry, InMemoryAuditLog
from stackl.datastore.base import DocumentStore, Transaction
from stackl.domain import hostnames
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import readiness
from stackl.usecases.ports import Ports

SERVICE = {"name": "web", "type": "service", "functional_requirements": []}


class FlakyAuditLog(InMemoryAuditLog):
    """An audit log whose writes fail while ``down``; records whether the change existed at each write."""

    def __init__(self, store: DocumentStore) -> None:
        super().__init__()
        self.down = False
        self.store = store
        self.service_existed: list[bool] = []

    async def _observe(self) -> None:
        if self.down:
            raise errors.StoreUnavailable("the database is unavailable: disk full")
        async with self.store.transaction(readonly=True) as tx:
            self.service_existed.append(await tx.get(doc_type="service", name="web") is not None)

    async def append(self, entry: AuditEntry, *, tx: Transaction | None = None) -> None:
        await self._observe()
        await super().append(entry, tx=tx)

    async def put(self, entry: AuditEntry) -> None:
        await self._observe()
        await super().put(entry)


@pytest.fixture
async def store() -> AsyncIterator[HiccupStore]:
    async with HiccupStore() as opened:
        yield opened


@pytest.fixture
def audit(store: HiccupStore) -> FlakyAuditLog:
    return FlakyAuditLog(store)


@pytest.fixture
def app(store: HiccupStore, audit: FlakyAuditLog, tmp_path: Path) -> FastAPI:
    ports = Ports(
        store=store,
        broker=InMemoryBroker(),
        policies=StaticPolicyEngine(),
        agents=InMemoryAgentRegistry(),
        audit=audit,
    )
    return create_app(Settings(data_dir=tmp_path / "data"), ports)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stackl.test") as c:
        yield c


async def test_a_change_whose_audit_entry_cannot_be_written_is_refused_and_not_made(
    api: httpx.AsyncClient, audit: FlakyAuditLog
) -> None:
    audit.down = True
    with capture_logs() as logs:
        refused = await api.post("/services", json=SERVICE)
    assert refused.status_code == 503, refused.text
    assert "audit log cannot be written" in refused.json()["detail"]
    audit.down = False
    assert (await api.get("/services/web")).status_code == 404  # nothing was changed
    assert audit.entries == []
    # the entry that could not be stored is in the log, whole, so that it is not lost
    failed = [e for e in logs if e["event"] == "audit_write_failed"]
    assert failed
    assert {failed[-1]["action"], failed[-1]["resource_name"], failed[-1]["method"]} == {
        "create",
        "web",
        "POST",
    }


async def test_the_entry_is_written_before_the_change_and_completed_after(
    api: httpx.AsyncClient, audit: FlakyAuditLog
) -> None:
    created = await api.post("/services", json=SERVICE)
    assert created.status_code == 200, created.text
    assert audit.service_existed == [False, True]  # pending before the change; completed after it
    (entry,) = audit.entries
    assert (entry.result, entry.status_code, entry.action, entry.resource_name) == (
        "success",
        200,
        "create",
        "web",
    )
    assert entry.request_id == created.headers["x-request-id"]
    listed = (await api.get("/audit", params={"result": "pending"})).json()["items"]
    assert listed == []


async def test_an_entry_left_pending_still_says_the_request_was_made(
    api: httpx.AsyncClient, audit: FlakyAuditLog
) -> None:
    async def completion_fails(entry: AuditEntry) -> None:
        raise errors.StoreUnavailable("the database is unavailable")

    audit.put = completion_fails  # type: ignore[method-assign]  # only the completion after the response
    with capture_logs() as logs:
        created = await api.post("/services", json=SERVICE)
    assert created.status_code == 200  # the change was made and audited; only its outcome is missing
    (entry,) = audit.entries
    assert (entry.result, entry.status_code, entry.resource_name) == ("pending", 0, "web")
    completion = [e for e in logs if e["event"] == "audit_write_failed"]
    assert completion[-1]["status_code"] == 200
    assert completion[-1]["audit_id"] == entry.id


async def test_readyz_fails_when_the_store_answers_but_takes_no_write(
    api: httpx.AsyncClient, store: HiccupStore
) -> None:
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "writes": "ok"}
    store.down = True  # ping still answers: the database is there, but no transaction commits
    refused = await api.get("/readyz")
    assert refused.status_code == 503
    assert refused.json()["status"] == "not_ready"
    assert refused.json()["checks"]["writes"].startswith("failed: ")
    store.down = False
    assert (await api.get("/readyz")).status_code == 200


async def test_the_probe_write_is_one_counter_that_never_names_a_host_counter(store: HiccupStore) -> None:
    ports = Ports(
        store=store, broker=InMemoryBroker(), policies=StaticPolicyEngine(), agents=InMemoryAgentRegistry()
    )
    for _ in range(3):
        await readiness.probe_write(ports)
    async with store.transaction(readonly=True) as tx:
        assert list(await tx.counters([readiness.PROBE_COUNTER])) == [readiness.PROBE_COUNTER]
    assert hostnames.counters_in("web-{counter(" + readiness.PROBE_COUNTER + ",1)}") == {}
