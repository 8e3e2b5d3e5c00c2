"""The TokenStore's UI session methods (datastore/tokens.py), run against every adapter: memory, SQLite, PostgreSQL."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.integration import adapters

from stackl.datastore.sql import SqlDocumentStore
from stackl.datastore.tokens import InMemoryTokenStore, SessionRecord, TokenStore
from stackl.datastore.tokens_sql import SqlTokenStore

NOW = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(params=adapters.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def tokens(kind: str, tmp_path: Path) -> AsyncIterator[TokenStore]:
    async with adapters.open_store(kind, tmp_path) as store:
        yield SqlTokenStore(store) if isinstance(store, SqlDocumentStore) else InMemoryTokenStore()


def session(
    key: str,
    token_id: str = "tok_1",  # noqa: S107 - a token id, not a secret
    *,
    expires_in: timedelta = timedelta(hours=1),
) -> SessionRecord:
    return SessionRecord(
        hash=key * 64,
        token_id=token_id,
        subject="vera",
        created_at=NOW,
        last_seen_at=NOW,
        expires_at=NOW + expires_in,
    )


async def test_a_session_is_stored_touched_and_revoked(tokens: TokenStore) -> None:
    await tokens.add_session(session("a"))
    assert await tokens.session("a" * 64) == session("a")
    assert await tokens.session("b" * 64) is None
    later = NOW + timedelta(minutes=5)
    await tokens.touch_session("a" * 64, at=later)
    touched = await tokens.session("a" * 64)
    assert touched is not None
    assert touched.last_seen_at == later
    assert touched.usable(later + timedelta(minutes=9), idle_s=600)
    assert not touched.usable(later + timedelta(minutes=10), idle_s=600)
    assert await tokens.revoke_session("a" * 64, at=later) is True
    assert await tokens.revoke_session("a" * 64, at=later) is False
    revoked = await tokens.session("a" * 64)
    assert revoked is not None
    assert revoked.revoked_at == later
    assert not revoked.usable(later, idle_s=600)


async def test_revoking_a_token_revokes_its_sessions_only(tokens: TokenStore) -> None:
    for key, token_id in (("a", "tok_1"), ("b", "tok_1"), ("c", "tok_2")):
        await tokens.add_session(session(key, token_id))
    assert await tokens.revoke_sessions("tok_1", at=NOW) == 2
    assert await tokens.revoke_sessions("tok_1", at=NOW) == 0
    states = {key: await tokens.session(key * 64) for key in "abc"}
    assert {key: (s.revoked_at if s else "gone") for key, s in states.items()} == {
        "a": NOW,
        "b": NOW,
        "c": None,
    }


async def test_ended_sessions_are_pruned(tokens: TokenStore) -> None:
    await tokens.add_session(session("a", expires_in=timedelta(minutes=1)))  # expired
    await tokens.add_session(session("b"))  # revoked below
    await tokens.add_session(session("c", expires_in=timedelta(days=2)))  # alive
    await tokens.revoke_session("b" * 64, at=NOW)
    assert await tokens.prune_sessions(before=NOW + timedelta(hours=1, minutes=30)) == 2
    assert [key for key in "abc" if await tokens.session(key * 64) is not None] == ["c"]
