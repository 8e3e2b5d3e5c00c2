"""Secrets at rest, on SQLite and PostgreSQL: the SQL store encrypts every secret value it writes.

A unique value is seeded in each document type that carries secrets (environment, location, zone, FR,
service, stack instance, and a snapshot's copy); reads, history and revisions give it back in clear, while no
column of any table holds it. Tokens and audit rows go to their tables too, never a token's secret.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.integration import adapters

from stackl import errors
from stackl.datastore import migrate, schema
from stackl.datastore.audit import AuditEntry, AuditQuery
from stackl.datastore.audit_sql import SqlAuditLog
from stackl.datastore.encryption import PREFIX, SecretBox
from stackl.datastore.sql import SqlDocumentStore
from stackl.datastore.tokens import TokenRecord
from stackl.datastore.tokens_sql import SqlTokenStore
from stackl.domain import auth
from stackl.domain.clock import SystemClock

KEY = b"0123456789abcdef" * 4


def bodies(secret: str) -> list[dict[str, Any]]:
    """One document of each type that carries secrets, each with its own secret value."""
    found: list[dict[str, Any]] = [
        {
            "type": kind,
            "name": f"{kind}-1",
            "secrets": {"password": f"{secret}-{kind}", "n": {"deep": secret}},
        }
        for kind in ("environment", "location", "zone", "functional_requirement", "service")
    ]
    found.append(
        {
            "type": "stack_instance",
            "name": "shop",
            "instance_secrets": {"db": f"{secret}-instance"},
            "service_secrets": {"web": {"key": f"{secret}-service"}},
            "services": {
                "web": [{"infrastructure_target": "dev.a.b", "secrets": {"s": f"{secret}-replica"}}]
            },
            "instance_params": {"shown": "********"},
        }
    )
    found.append(
        {
            "type": "snapshot",
            "name": "snap",
            "source": {"type": "environment", "name": "environment-1", "revision": 1},
            "snapshot": {"type": "environment", "name": "environment-1", "secrets": {"p": f"{secret}-snap"}},
        }
    )
    return found


@pytest.fixture(params=adapters.SQL_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "postgresql":
        async with adapters.pg_database() as pg:
            yield pg
    else:
        sqlite = adapters.sqlite_url(tmp_path)
        await migrate.upgrade(sqlite)
        yield sqlite


async def dump(store: SqlDocumentStore) -> str:
    """Every column of every table, as text."""
    rows: list[str] = []
    async with store.engine.connect() as connection:
        for table in schema.metadata.sorted_tables:
            result = await connection.execute(sa.select(table))
            rows.extend(repr(tuple(row)) for row in result)
    return "\n".join(rows)


async def test_secret_values_are_encrypted_in_every_table(url: str) -> None:
    secret = "Seeded-Secret-7f3a91"
    box = SecretBox(KEY)
    async with SqlDocumentStore(url, secret_box=box) as store:
        for body in bodies(secret):
            async with store.transaction() as tx:
                await tx.put(doc_type=body["type"], name=body["name"], body=body, subject="t")
        changed = {**bodies(secret)[0], "secrets": {"password": f"{secret}-v2"}}
        async with store.transaction() as tx:
            await tx.put(doc_type="environment", name="environment-1", body=changed, subject="t")
        tokens, audit = SqlTokenStore(store), SqlAuditLog(store)
        token_secret = "stackl_" + "A" * 43
        now = SystemClock().now()
        await tokens.add(
            TokenRecord("tok_1", auth.token_hash(token_secret), "alice", "admin", None, "", now, "t")
        )
        entry = AuditEntry(
            "01J", now, "alice", "admin", "create", "POST", "/services", "service", "web", 200, "success", "r"
        )
        await audit.append(entry)
        assert (await audit.query(AuditQuery(subject="alice"))).items == [entry]

        text = await dump(store)
        assert secret not in text
        assert token_secret not in text
        assert text.count(PREFIX) >= 12
        assert "********" in text  # a value equal to the mask is no secret and stays

        for body in bodies(secret)[1:]:
            async with store.transaction(readonly=True) as tx:
                stored = await tx.get(doc_type=body["type"], name=body["name"])
            assert stored is not None
            assert stored.body == body
        async with store.transaction(readonly=True) as tx:
            history = await tx.history(doc_type="environment", name="environment-1")
            first = await tx.revision(doc_type="environment", name="environment-1", revision=1)
        assert [e.body["secrets"]["password"] for e in history.items if e.body] == [
            f"{secret}-v2",
            f"{secret}-environment",
        ]
        assert first.body == bodies(secret)[0]
        assert await tokens.by_hash(auth.token_hash(token_secret)) is not None

    async with SqlDocumentStore(url, secret_box=SecretBox(b"another key")) as wrong:
        with pytest.raises(errors.StoreUnavailable, match="secret key"):
            async with wrong.transaction(readonly=True) as tx:
                await tx.get(doc_type="service", name="service-1")


async def test_clear_values_written_before_encryption_still_read(url: str) -> None:
    body = bodies("old-value")[4]
    async with SqlDocumentStore(url) as plain, plain.transaction() as tx:
        await tx.put(doc_type="service", name="service-1", body=body, subject="t")
    async with SqlDocumentStore(url, secret_box=SecretBox(KEY)) as store:
        async with store.transaction() as tx:
            assert (await tx.get(doc_type="service", name="service-1")) is not None
        async with store.transaction() as tx:
            stored = await tx.get(doc_type="service", name="service-1")
            assert stored is not None
            assert stored.body == body
            await tx.put(doc_type="service", name="service-1", body={**body, "description": "x"}, subject="t")
        async with store.engine.connect() as connection:
            row = (await connection.execute(sa.select(schema.documents.c.body))).scalar_one()
        assert str(row["secrets"]["password"]).startswith(PREFIX)
