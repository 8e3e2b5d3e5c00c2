"""The body limit of the ASGI layer (issue 15, defect 4): refused before authentication and before any read.

A 200 MB POST to ``/agents/register`` without a token used to be read whole (FastAPI reads pydantic bodies
before the access check) before the 401. Now a declared length over the limit is answered 413 without
reading a byte, and a chunked body is cut off at the first chunk past the limit, on every route.
"""

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

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

LIMIT = 4096
CHUNK = b"x" * 1024
PATHS = [
    ("POST", "/agents/register"),  # a pydantic body: FastAPI reads it before the access check
    ("POST", "/documents/zone"),
    ("PUT", "/infrastructure_base"),
    ("POST", "/stack_instances/plan"),
    ("POST", "/ui/login"),
    ("POST", "/no/such/route"),
]


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app with auth on and a 4 KiB body limit; requests carry no token."""
    async with InMemoryDocumentStore() as store:
        app = create_app(
            Settings(
                data_dir=tmp_path / "data",
                auth={"enabled": True},
                server={"max_body_bytes": LIMIT, "body_read_timeout_s": 0.05},
            ),
            Ports(
                store=store,
                broker=InMemoryBroker(),
                policies=StaticPolicyEngine(),
                agents=InMemoryAgentRegistry(),
            ),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
            yield client


class CountingBody:
    """A chunked request body that counts the chunks the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.total, self.pulled = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total):
            self.pulled += 1
            yield CHUNK


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "payload_too_large"
    assert problem["errors"][0]["loc"] == ["body"]
    assert str(LIMIT) in problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(("method", "path"), PATHS)
async def test_a_declared_length_over_the_limit_is_refused_before_reading_or_authenticating(
    guarded: httpx.AsyncClient, method: str, path: str
) -> None:
    body = CountingBody(10_000)  # 10 MB, announced
    response = await guarded.request(
        method,
        path,
        content=body,
        headers={"Content-Length": str(10_000 * len(CHUNK)), "Content-Type": "application/json"},
    )
    assert_refused(response)
    assert body.pulled <= 1  # the transport may have the first chunk ready; the app read nothing


@pytest.mark.parametrize(("method", "path"), PATHS)
async def test_a_chunked_body_is_cut_off_at_the_limit(
    guarded: httpx.AsyncClient, method: str, path: str
) -> None:
    body = CountingBody(10_000)
    response = await guarded.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert body.pulled <= LIMIT // len(CHUNK) + 2  # not one chunk more than needed to pass the limit
    if body.pulled > LIMIT // len(CHUNK):  # the app read up to the limit: the limit answered, not the app
        assert_refused(response)
    if path == "/agents/register":  # FastAPI reads this body before the access check: the limit stops it
        assert_refused(response)


async def test_a_huge_declared_length_is_a_413_not_a_500(guarded: httpx.AsyncClient) -> None:
    headers = {"Content-Length": "9" * 5000, "Content-Type": "application/json"}
    response = await guarded.post("/documents/zone", content=b"{}", headers=headers)
    assert_refused(response)


async def test_a_body_within_the_limit_reaches_authentication(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/agents/register", json={"name": "a1"})
    assert response.status_code in (401, 422)  # what the app makes of it: the limit let it through


async def test_a_stalled_body_is_answered_408(tmp_path: Path) -> None:
    async with InMemoryDocumentStore() as store:
        app: FastAPI = create_app(
            Settings(data_dir=tmp_path / "data", server={"body_read_timeout_s": 0.01}),
            Ports(
                store=store,
                broker=InMemoryBroker(),
                policies=StaticPolicyEngine(),
                agents=InMemoryAgentRegistry(),
            ),
        )
        never = asyncio.Event()
        sent: list[dict[str, Any]] = []
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"name":', "more_body": True}
            await never.wait()  # the rest of the body never comes
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/documents/zone",
            "raw_path": b"/documents/zone",
            "query_string": b"",
            "headers": [(b"host", b"stackl.test"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1234),
            "server": ("stackl.test", 80),
        }
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"request_timeout" in body
