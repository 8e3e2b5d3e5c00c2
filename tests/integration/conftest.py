"""Integration fixtures: the session's PostgreSQL template database and a fresh database per test."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tests.integration import adapters


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_template() -> AsyncIterator[str]:
    """The template database, migrated to head once per session and dropped at its end."""
    yield await adapters.ensure_pg_template()
    await adapters.drop_pg_template()


@pytest.fixture
async def pg_database_url(pg_template: str) -> AsyncIterator[str]:
    """The URL of a fresh PostgreSQL database at the schema head, dropped after the test."""
    async with adapters.pg_database() as url:
        yield url
