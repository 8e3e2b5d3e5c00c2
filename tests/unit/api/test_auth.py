"""Authentication, authorization and audit on the in-process app with auth on (api.md §0.2, §B.6-B.8).

The route walk covers every operation of the OpenAPI document: without a token each (but health, version and
about) answers 401; with a viewer token each mutating one answers 403 (but plan and policy evaluation);
an agent token acts for its own agent only.
"""

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.audit import AuditQuery
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain import auth
from stackl.domain.auth import Role
from stackl.policy.rego import RegoPolicyEngine
from stackl.usecases import authorization
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

PUBLIC = {"healthz", "readyz", "get_version", "get_hostname"}
VIEWER_MAY_POST = {"plan_stack_instance", "evaluate_policy", "test_policy"}
MUTATING = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def engine() -> Iterator[RegoPolicyEngine]:
    policies = RegoPolicyEngine(max_workers=1)
    yield policies
    policies.close()


@pytest.fixture
async def ports(engine: RegoPolicyEngine) -> AsyncIterator[Ports]:
    async with InMemoryDocumentStore() as store:
        yield Ports(store=store, broker=InMemoryBroker(), policies=engine, agents=InMemoryAgentRegistry())


@pytest.fixture
def app(ports: Ports, tmp_path: Path) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path / "data", auth={"enabled": True}), ports)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
        yield client


async def token(ports: Ports, role: Role, *, agent: str | None = None, subject: str = "") -> dict[str, str]:
    created = await token_cases.issue(
        ports, subject=subject or f"{role.value}-user", role=role, agent=agent, created_by="test"
    )
    return {"Authorization": f"Bearer {created.secret}"}


def operations(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, concrete path, operationId) of every operation in the OpenAPI document."""
    found = []
    for path, methods in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path).replace("/documents/x", "/documents/service")
        for method, operation in methods.items():
            found.append((method, concrete, operation["operationId"]))
    assert len(found) > 60
    return found


async def call(api: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    params = {"wait": "0"} if method == "get" else None
    body: dict[str, object] | None = None if method in ("get", "delete") else {}
    return await api.request(method.upper(), path, json=body, headers=headers, params=params)


async def test_every_operation_needs_a_token_but_the_public_ones(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    for method, path, operation_id in operations(app):
        answer = await call(api, method, path, {})
        if operation_id in PUBLIC:
            assert answer.status_code == 200, (method, path)
        else:
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["code"] == "unauthorized"
    bad = {"Authorization": "Bearer stackl_" + "x" * 43}
    assert (await api.get("/documents", headers=bad)).status_code == 401
    assert (await api.get("/documents", headers={"Authorization": "Basic abc"})).status_code == 401


async def test_a_viewer_may_change_nothing(app: FastAPI, api: httpx.AsyncClient, ports: Ports) -> None:
    viewer = await token(ports, Role.viewer)
    for method, path, operation_id in operations(app):
        if method not in MUTATING or operation_id in VIEWER_MAY_POST:
            continue
        answer = await call(api, method, path, viewer)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["reasons"], (method, path)
    for path in ("/documents", "/stack_instances", "/tasks", "/agents"):
        assert (await api.get(path, headers=viewer)).status_code == 200, path
    for path in ("/auth/tokens", "/audit"):
        assert (await api.get(path, headers=viewer)).status_code == 403, path
    answer = await api.post(
        "/policies/evaluate", json={"policy": "package p\nx := 1", "rule": "x"}, headers=viewer
    )
    assert answer.status_code == 200


async def test_roles_of_the_default_policy(api: httpx.AsyncClient, ports: Ports) -> None:
    operator, admin = await token(ports, Role.operator), await token(ports, Role.admin)
    service = {"name": "web", "type": "service", "functional_requirements": []}
    assert (await api.post("/services", json=service, headers=operator)).status_code == 200
    env = {"name": "prod", "type": "environment", "category": "configs"}
    refused = await api.post("/infrastructure_base", json=env, headers=operator)
    assert refused.status_code == 403
    assert refused.json()["reasons"] == ["role operator may not create environment"]
    assert (await api.post("/infrastructure_base", json=env, headers=admin)).status_code == 200
    bulk = [{**service, "name": "web2"}, {"name": "dev", "type": "environment"}]
    assert (await api.post("/documents", json=bulk, headers=operator)).status_code == 403
    applied = await api.post("/documents", json=bulk[:1], headers=operator)
    assert applied.status_code == 200, applied.text
    assert (await api.get("/auth/tokens", headers=admin)).status_code == 200


async def test_an_agent_token_acts_for_its_own_agent_only(api: httpx.AsyncClient, ports: Ports) -> None:
    agent = await token(ports, Role.agent, agent="bru-agent")
    claim = {"instance_id": "i-1", "wait": 0}
    other = await api.post("/agents/ghent-agent/claim", json=claim, headers=agent)
    assert other.status_code == 403
    assert "an agent token for 'bru-agent' may not act for agent 'ghent-agent'" in other.json()["reasons"]
    own = await api.post("/agents/bru-agent/claim", json=claim, headers=agent)
    assert own.status_code not in (401, 403), own.text
    register = {"name": "ghent-agent", "instance_id": "i-2", "hostname": "h", "version": "1", "protocol": 1}
    assert (await api.post("/agents/register", json=register, headers=agent)).status_code == 403
    for path in ("/documents", "/tasks", "/stack_instances", "/agents"):
        assert (await api.get(path, headers=agent)).status_code == 403, path
    assert (await api.get("/about", headers=agent)).status_code == 200
    who = (await api.get("/auth/whoami", headers=agent)).json()
    assert (who["subject"], who["roles"], who["agent"]) == ("agent-user", ["agent"], "bru-agent")


async def test_tokens_are_shown_once_hashed_revocable_and_expire(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    admin = await token(ports, Role.admin, subject="root")
    created = await api.post(
        "/auth/tokens", json={"subject": "alice", "role": "operator", "expires_in_s": 3600}, headers=admin
    )
    assert created.status_code == 201
    secret = created.json()["token"]
    assert re.fullmatch(r"stackl_[A-Za-z0-9_-]{43}", secret)
    alice = {"Authorization": f"Bearer {secret}"}
    who = (await api.get("/auth/whoami", headers=alice)).json()
    assert (who["subject"], who["roles"], who["auth_enabled"]) == ("alice", ["operator"], True)
    listed = await api.get("/auth/tokens", headers=admin)
    assert secret not in listed.text
    record = await ports.tokens.get(created.json()["id"])
    assert record is not None
    assert record.hash == auth.token_hash(secret)
    assert record.last_used_at is not None
    assert secret not in repr(record)
    bad = await api.post("/auth/tokens", json={"subject": "x", "role": "agent"}, headers=admin)
    assert bad.status_code == 422
    assert (await api.delete(f"/auth/tokens/{created.json()['id']}", headers=admin)).status_code == 204
    assert (await api.get("/auth/whoami", headers=alice)).status_code == 401
    assert (await api.delete(f"/auth/tokens/{created.json()['id']}", headers=admin)).status_code == 404
    short = await token_cases.issue(ports, subject="s", role=Role.viewer, expires_in_s=0.0, created_by="t")
    assert (
        await api.get("/documents", headers={"Authorization": f"Bearer {short.secret}"})
    ).status_code == 401


async def test_audit_records_mutations_and_refusals(api: httpx.AsyncClient, ports: Ports) -> None:
    admin, viewer = await token(ports, Role.admin), await token(ports, Role.viewer)
    service = {"name": "web", "type": "service", "functional_requirements": []}
    await api.post("/services", json=service, headers={"X-Request-ID": "req-1", **admin})
    await api.delete("/services/web", headers=viewer)
    await api.delete("/services/web")
    await api.get("/services", headers=admin)  # reads are not audited
    page = (await api.get("/audit", headers=admin)).json()
    entries = page["items"]
    assert [(e["subject"], e["action"], e["result"], e["status_code"]) for e in entries] == [
        ("anonymous", "delete", "denied", 401),
        ("viewer-user", "delete", "denied", 403),
        ("admin-user", "create", "success", 200),
    ]
    first = entries[-1]
    assert first["resource"] == {"type": "service", "name": "web"}
    assert (first["request_id"], first["role"], first["revision"]) == ("req-1", "admin", 1)
    assert first["token_id"].startswith("tok_")
    denied = (await api.get("/audit", params={"result": "denied", "limit": 1}, headers=admin)).json()
    assert len(denied["items"]) == 1
    assert denied["next_cursor"]
    more = await api.get(
        "/audit", params={"result": "denied", "cursor": denied["next_cursor"]}, headers=admin
    )
    assert [e["subject"] for e in more.json()["items"]] == ["viewer-user"]
    mine = await api.get("/audit", params={"subject": "admin-user"}, headers=admin)
    assert len(mine.json()["items"]) == 1


USER_POLICY = """package authorization
import rego.v1
default allow := false
allow if "admin" in input.roles
allow if {
  some r in input.roles
  r in {"viewer", "operator"}
  input.action in {"read", "plan", "evaluate"}
}
allow if {
  "operator" in input.roles
  input.resource.type == "stack_instance"
  count(input.environments) > 0
  every env in input.environments { env == "development" }
}
reasons contains msg if {
  "operator" in input.roles
  some env in input.environments
  env != "development"
  msg := sprintf("operators may deploy only to development, not %s", [env])
}
"""


async def test_a_user_policy_replaces_the_default(api: httpx.AsyncClient, ports: Ports) -> None:
    admin, operator = await token(ports, Role.admin), await token(ports, Role.operator)
    template = {"name": "authorization", "type": "policy_template", "policy": USER_POLICY}
    assert (await api.put("/policy_templates", json=template, headers=admin)).status_code == 200
    # the default let operators write services; this policy does not
    refused = await api.post(
        "/services", json={"name": "web", "type": "service", "functional_requirements": []}, headers=operator
    )
    assert refused.status_code == 403
    assert refused.json()["reasons"] == ["denied by the authorization policy"]
    # environments come from the stored instance's targets
    async with ports.store.transaction() as tx:
        body = {
            "name": "shop",
            "type": "stack_instance",
            "services": {"web": [{"infrastructure_target": "production.brussels.dmz"}]},
        }
        await tx.put(doc_type="stack_instance", name="shop", body=body, subject="t")
    denied = await api.delete("/stack_instances/shop", headers=operator)
    assert denied.status_code == 403
    assert denied.json()["reasons"] == ["operators may deploy only to development, not production"]
    assert await authorization.instance_environments(ports, "shop") == ("production",)
    # a bad user policy cannot lock the admins out of the policy itself
    broken = {**template, "policy": "package authorization\nimport rego.v1\ndefault allow := false\n"}
    assert (await api.put("/policy_templates", json=broken, headers=admin)).status_code == 200
    assert (await api.get("/services", headers=admin)).status_code == 403
    assert (await api.delete("/policy_templates/authorization", headers=admin)).status_code == 200
    assert (await api.get("/services", headers=admin)).status_code == 200


async def test_the_token_path_prefix(ports: Ports, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, auth={"enabled": True, "token_path_prefix": True})
    app = create_app(settings, ports)
    created = await token_cases.issue(ports, subject="old-cli", role=Role.viewer, created_by="t")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
        assert (await client.get(f"/t/{created.secret}/services")).status_code == 200
        assert (await client.get("/t/stackl_nope/services")).status_code == 401
        denied = await client.delete(f"/t/{created.secret}/services/web")
        assert denied.status_code == 403
        assert created.secret not in denied.text
    entry = (await ports.audit.query(AuditQuery())).items[0]
    assert entry.path == "/services/web"


async def test_ui_login_cookie_and_refusals(api: httpx.AsyncClient, ports: Ports) -> None:
    page = await api.get("/ui/documents")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login?next=%2Fui%2Fdocuments"
    assert (await api.get("/ui/static/stackl.css")).status_code == 200
    assert (await api.get("/ui/login")).status_code == 200
    origin = {"Origin": "http://stackl.test"}
    wrong = await api.post("/ui/login", data={"token": "stackl_bad", "next": "/ui"}, headers=origin)
    assert wrong.status_code == 401
    viewer = await token_cases.issue(ports, subject="v", role=Role.viewer, created_by="t")
    login = await api.post(
        "/ui/login", data={"token": viewer.secret, "next": "https://evil.example/"}, headers=origin
    )
    assert (login.status_code, login.headers["location"]) == (303, "/ui")
    cookie = login.headers["set-cookie"].lower()
    assert all(part in cookie for part in ("httponly", "samesite=strict", "path=/ui"))
    assert (await api.get("/ui/documents")).status_code == 200
    refused = await api.post("/ui/documents/service/web/restore", data={"revision": "1"}, headers=origin)
    assert refused.status_code == 403
    # the cookie never authenticates API calls
    assert (await api.get("/documents")).status_code == 401
    await api.post("/ui/logout", headers=origin)
    assert (await api.get("/ui/documents")).status_code == 303


async def test_auth_off_acts_as_local_admin_and_still_audits(tmp_path: Path, ports: Ports) -> None:
    app = create_app(Settings(data_dir=tmp_path), ports)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
        who = (await client.get("/auth/whoami")).json()
        assert (who["subject"], who["roles"], who["auth_enabled"]) == ("local", ["admin"], False)
        await client.post("/services", json={"name": "web", "type": "service", "functional_requirements": []})
        entries: Any = (await client.get("/audit")).json()["items"]
    assert [(e["subject"], e["action"], e["resource"]["name"]) for e in entries] == [
        ("local", "create", "web")
    ]
