"""The AuditLog in a change's transaction, the completion of pending entries, and the readiness write (issue 15).

Run against every store: memory, SQLite, PostgreSQL. The claim test runs the real claim and result use cases on
the SQL broker: a claim or result whose audit entry cannot be written changes nothing (its transaction rolls
back).
"""

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.integration import adapters

from stackl import errors
from stackl.broker.base import ItemSpec
from stackl.broker.memory import InMemoryBroker
from stackl.broker.sql import SqlBroker
from stackl.datastore.agents import AgentInstance
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.agents_sql import SqlAgentRegistry
from stackl.datastore.audit import AuditEntry, AuditLog, AuditQuery, InMemoryAuditLog
from stackl.datastore.audit_sql import SqlAuditLog
from stackl.datastore.base import DocumentStore, Transaction
from stackl.datastore.sql import SqlDocumentStore
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import agent_claims, agent_reports, agents, readiness
from stackl.usecases.ports import Ports

NOW = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
ENTRY = AuditEntry(
    id="01JNM2ZK4T8W3X6Y9A1B5C7D2E",
    time=NOW,
    subject="alice",
    role="admin",
    action="create",
    method="POST",
    path="/services",
    resource_type="service",
    resource_name="web",
    status_code=0,
    result="pending",
    request_id="r-1",
)


@pytest.fixture(params=adapters.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    async with adapters.open_store(kind, tmp_path) as opened:
        yield opened


def audit_of(store: DocumentStore) -> AuditLog:
    return SqlAuditLog(store) if isinstance(store, SqlDocumentStore) else InMemoryAuditLog()


async def entries(audit: AuditLog) -> list[AuditEntry]:
    return (await audit.query(AuditQuery())).items


async def test_an_entry_in_a_transaction_commits_and_rolls_back_with_it(store: DocumentStore) -> None:
    audit = audit_of(store)

    async def failed_change() -> None:
        async with store.transaction() as tx:
            await audit.append(ENTRY, tx=tx)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failed_change()
    assert await entries(audit) == []
    async with store.transaction() as tx:
        await audit.append(ENTRY, tx=tx)
    assert await entries(audit) == [ENTRY]


async def test_put_completes_a_pending_entry_or_writes_a_missing_one(store: DocumentStore) -> None:
    audit = audit_of(store)
    await audit.append(ENTRY)
    done = replace(ENTRY, status_code=200, result="success", revision=3)
    await audit.put(done)
    assert await entries(audit) == [done]
    other = replace(done, id="01JNM2ZK4T8W3X6Y9A1B5C7D2F")  # its transaction rolled back: nothing to update
    await audit.put(other)
    assert {e.id for e in await entries(audit)} == {ENTRY.id, other.id}


async def test_the_readiness_write_keeps_one_row(store: DocumentStore) -> None:
    ports = Ports(
        store=store, broker=InMemoryBroker(), policies=StaticPolicyEngine(), agents=InMemoryAgentRegistry()
    )
    assert (await readiness.check(ports))["writes"] == "ok"
    for _ in range(5):
        await readiness.probe_write(ports)
    async with store.transaction(readonly=True) as tx:
        assert list(await tx.counters([readiness.PROBE_COUNTER, "web"])) == [readiness.PROBE_COUNTER]


class RefusingAuditLog(SqlAuditLog):
    """The SQL audit log on a database that refuses its writes (a full disk, say)."""

    async def append(self, entry: AuditEntry, *, tx: Transaction | None = None) -> None:
        raise errors.StoreUnavailable("the database is unavailable: database or disk is full")


@pytest.mark.parametrize("sql_kind", adapters.SQL_KINDS)
async def test_a_claim_whose_audit_entry_cannot_be_written_takes_no_job(
    sql_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if sql_kind == "postgresql":
        request.getfixturevalue("pg_template")
    async with adapters.open_store(sql_kind, tmp_path) as store:
        assert isinstance(store, SqlDocumentStore)
        async with SqlBroker(store) as broker:
            await claim_without_audit(store, broker)


async def claim_without_audit(store: SqlDocumentStore, broker: SqlBroker) -> None:
    """The claim use case on a database that refuses the audit entry, then on one that takes it."""
    ports = Ports(
        store=store,
        broker=broker,
        policies=StaticPolicyEngine(),
        agents=SqlAgentRegistry(store),
        audit=RefusingAuditLog(store),
    )
    now = ports.clock.now()
    await ports.agents.register(
        AgentInstance(
            instance_id="i-1",
            name="bru-agent",
            hostname="h",
            version="1",
            protocol=1,
            executors=[],
            tools={"shell": "sh"},
            labels={},
            max_jobs=1,
            registered_at=now,
            last_seen=now,
            free_slots=1,
        )
    )
    spec = ItemSpec(queue=agents.queue_of("bru-agent"), kind="job", payload={"tool": "shell"}, max_attempts=3)
    job_id = (await broker.enqueue(spec)).id
    with pytest.raises(errors.StoreUnavailable):
        await agent_claims.claim(ports, "bru-agent", instance_id="i-1", wait=0, audit=ENTRY)
    item = await broker.get(job_id)
    assert item is not None
    assert (item.state, item.attempt) == ("queued", 0)  # the claim rolled back with its entry
    assert await ports.agents.get_attempt(job_id, 1) is None
    ports = replace(ports, audit=SqlAuditLog(store))
    claimed = await agent_claims.claim(ports, "bru-agent", instance_id="i-1", wait=0, audit=ENTRY)
    assert [job["job_id"] for job in claimed] == [job_id]
    (entry,) = await entries(ports.audit)
    assert entry.detail == {"jobs": [{"job_id": job_id, "attempt": 1, "task_id": None}]}

    # a result whose entry cannot be written is not applied; the agent's retry is, with its entry
    outcome = agent_reports.JobResult(attempt=1, status="READY", exit_code=0)
    result_entry = replace(ENTRY, id="01JNM2ZK4T8W3X6Y9A1B5C7D2G", action="report", status_code=200)
    refusing = replace(ports, audit=RefusingAuditLog(store))
    with pytest.raises(errors.StoreUnavailable):
        await agent_reports.result(
            refusing, "bru-agent", job_id, instance_id="i-1", outcome=outcome, audit=result_entry
        )
    item = await broker.get(job_id)
    assert item is not None
    assert item.state == "running"
    answer = await agent_reports.result(
        ports, "bru-agent", job_id, instance_id="i-1", outcome=outcome, audit=result_entry
    )
    assert answer == {"accepted": True}
    done = await broker.get(job_id)
    assert done is not None
    assert done.state == "succeeded"
    assert {e.id for e in await entries(ports.audit)} == {ENTRY.id, result_entry.id}
