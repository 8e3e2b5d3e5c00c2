"""An in-process API on the in-memory store, reached through httpx's ASGI transport."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases.ports import Ports


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with InMemoryDocumentStore() as store:
        yield create_app(
            Settings(data_dir=tmp_path / "data"),
            Ports(
                store=store,
                broker=InMemoryBroker(),
                policies=StaticPolicyEngine(),
                agents=InMemoryAgentRegistry(),
            ),
        )


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
        yield client
