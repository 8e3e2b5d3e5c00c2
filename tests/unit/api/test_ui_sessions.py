"""Web UI sessions (issue 15, defect 11): the cookie is an opaque server-side session, not the API token.

The attack: the UI cookie was the raw API token, with no expiry, still valid after signing out; a copy taken
from a browser was a working API token for good. Now the cookie holds a session id stored hashed, which ends
at sign-out, after the idle time, at the absolute limit and with the token's revocation.
"""

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.clocks import ManualClock

from stackl.api import deps
from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain import auth
from stackl.domain.auth import Role
from stackl.policy.rego import RegoPolicyEngine
from stackl.usecases import tokens as token_cases
from stackl.usecases import ui_sessions
from stackl.usecases.ports import Ports

IDLE_S, MAX_S = 600.0, 3600.0
ORIGIN = {"Origin": "http://stackl.test"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def engine() -> Iterator[RegoPolicyEngine]:
    policies = RegoPolicyEngine(max_workers=1)
    yield policies
    policies.close()


@pytest.fixture
async def ports(clock: ManualClock, engine: RegoPolicyEngine) -> AsyncIterator[Ports]:
    async with InMemoryDocumentStore() as store:
        yield Ports(
            store=store,
            broker=InMemoryBroker(),
            policies=engine,
            agents=InMemoryAgentRegistry(),
            clock=clock,
        )


@pytest.fixture
def app(ports: Ports, tmp_path: Path) -> FastAPI:
    auth_settings = {"enabled": True, "ui_session_idle_s": IDLE_S, "ui_session_max_s": MAX_S}
    return create_app(Settings(data_dir=tmp_path / "data", auth=auth_settings), ports)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stackl.test") as c:
        yield c


async def sign_in(api: httpx.AsyncClient, ports: Ports) -> tuple[str, token_cases.Created]:
    """Sign in with a fresh viewer token; the session id from the cookie, and the token."""
    token = await token_cases.issue(ports, subject="vera", role=Role.viewer, created_by="t")
    login = await api.post("/ui/login", data={"token": token.secret, "next": "/ui"}, headers=ORIGIN)
    assert login.status_code == 303, login.text
    session = api.cookies.get(deps.COOKIE)
    assert session is not None
    return session, token


def thief(app: FastAPI, session: str) -> httpx.AsyncClient:
    """Another browser holding a copy of the cookie."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://stackl.test",
        headers={"Cookie": f"{deps.COOKIE}={session}"},
    )


async def test_the_cookie_is_an_opaque_session_stored_hashed(api: httpx.AsyncClient, ports: Ports) -> None:
    session, token = await sign_in(api, ports)
    assert token.secret not in session
    assert session.startswith(ui_sessions.SESSION_PREFIX)
    assert not auth.looks_like_token(session)
    record = await ports.tokens.session(ui_sessions.session_hash(session))
    assert record is not None
    assert (record.token_id, record.subject, record.hash) == (
        token.record.id,
        "vera",
        auth.token_hash(session),
    )
    assert record.expires_at == record.created_at + timedelta(seconds=MAX_S)
    page = await api.get("/ui/documents")
    assert page.status_code == 200
    assert "Sign out" in page.text
    # the session is good for the UI only: not as a Bearer token, not on API paths
    assert (await api.get("/documents")).status_code == 401
    bearer = {"Authorization": f"Bearer {session}"}
    assert (await api.get("/documents", headers=bearer)).status_code == 401


async def test_the_cookie_flags(app: FastAPI, ports: Ports) -> None:
    token = await token_cases.issue(ports, subject="vera", role=Role.viewer, created_by="t")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://stackl.test") as tls:
        login = await tls.post(
            "/ui/login", data={"token": token.secret}, headers={"Origin": "https://stackl.test"}
        )
    cookie = login.headers["set-cookie"].lower()
    for flag in ("httponly", "samesite=strict", "path=/ui", "secure", f"max-age={int(MAX_S)}"):
        assert flag in cookie, (flag, cookie)
    assert token.secret.lower() not in cookie


async def test_signing_out_revokes_the_session_so_a_stolen_cookie_is_worthless(
    app: FastAPI, api: httpx.AsyncClient, ports: Ports
) -> None:
    session, _ = await sign_in(api, ports)
    async with thief(app, session) as copy:
        assert (await copy.get("/ui/documents")).status_code == 200  # a copy works while the session lives
        out = await api.post("/ui/logout", headers=ORIGIN)
        assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
        assert f'{deps.COOKIE}=""' in out.headers["set-cookie"]
        stolen = await copy.get("/ui/documents")
        assert (stolen.status_code, stolen.headers["location"]) == (303, "/ui/login?next=%2Fui%2Fdocuments")
        fragment = await copy.get("/ui/instances/shop/live")
        assert fragment.status_code == 303
    record = await ports.tokens.session(ui_sessions.session_hash(session))
    assert record is not None
    assert record.revoked_at is not None


async def test_a_session_ends_when_idle(api: httpx.AsyncClient, ports: Ports, clock: ManualClock) -> None:
    await sign_in(api, ports)
    for _ in range(3):  # activity keeps it alive past the idle time
        clock.advance(IDLE_S - 120)
        assert (await api.get("/ui/documents")).status_code == 200
    clock.advance(IDLE_S + 1)
    assert (await api.get("/ui/documents")).status_code == 303


async def test_a_session_ends_at_its_absolute_limit_however_active(
    api: httpx.AsyncClient, ports: Ports, clock: ManualClock
) -> None:
    await sign_in(api, ports)
    for _ in range(int(MAX_S // 300) - 1):
        clock.advance(300)
        assert (await api.get("/ui/documents")).status_code == 200
    clock.advance(300)
    assert (await api.get("/ui/documents")).status_code == 303


async def test_revoking_the_token_ends_its_sessions(
    app: FastAPI, api: httpx.AsyncClient, ports: Ports
) -> None:
    session, token = await sign_in(api, ports)
    await token_cases.revoke(ports, token.record.id)
    assert (await api.get("/ui/documents")).status_code == 303
    record = await ports.tokens.session(ui_sessions.session_hash(session))
    assert record is not None
    assert record.revoked_at is not None


async def test_a_session_never_outlives_its_token(
    api: httpx.AsyncClient, ports: Ports, clock: ManualClock
) -> None:
    token = await token_cases.issue(
        ports, subject="vera", role=Role.viewer, created_by="t", expires_in_s=IDLE_S / 2
    )
    login = await api.post("/ui/login", data={"token": token.secret}, headers=ORIGIN)
    assert login.status_code == 303
    clock.advance(IDLE_S / 2 + 1)
    assert (await api.get("/ui/documents")).status_code == 303


async def test_forged_and_unknown_session_ids_are_refused(app: FastAPI, ports: Ports) -> None:
    token = await token_cases.issue(ports, subject="vera", role=Role.viewer, created_by="t")
    for value in (token.secret, ui_sessions.SESSION_PREFIX + "A" * 43, "garbage"):
        async with thief(app, value) as client:
            assert (await client.get("/ui/documents")).status_code == 303, value


async def test_ended_sessions_are_pruned_at_the_next_sign_in(
    api: httpx.AsyncClient, ports: Ports, clock: ManualClock
) -> None:
    first, _ = await sign_in(api, ports)
    await api.post("/ui/logout", headers=ORIGIN)
    clock.advance(ui_sessions.PRUNE_AFTER.total_seconds() + MAX_S)
    await sign_in(api, ports)
    assert await ports.tokens.session(ui_sessions.session_hash(first)) is None
