"""YAML bodies (issue 15, defect 3) and huge numbers in bodies (defect 8).

A 1 MB YAML body used to block ``/healthz`` for 19.5 s: it was parsed by the pure-Python loader on the event
loop, for the access check and again for the route, and with auth on any valid token sufficed. Now libyaml
parses it once, on threads of its own, after authentication; alias bombs and integers too long to convert are
refused naming the field.
"""

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests import factories

from stackl.api import bodies
from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.auth import Role
from stackl.policy.rego import RegoPolicyEngine
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

YAML = {"Content-Type": "application/yaml"}
BIG = "1" + "0" * 5000


class ParseSpy:
    """Wraps the YAML parse: which threads ran it, and a gate that holds it until the test releases it."""

    def __init__(self) -> None:
        self.original = bodies._yaml_documents
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, raw: bytes) -> list[Any]:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        self.gate.wait(timeout=30)
        return self.original(raw)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ParseSpy]:
    found = ParseSpy()
    monkeypatch.setattr(bodies, "_yaml_documents", found)
    yield found
    found.gate.set()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An app with auth on, and an admin token."""
    engine = RegoPolicyEngine(max_workers=1)  # the shipped authorization policy
    try:
        async with InMemoryDocumentStore() as store:
            ports = Ports(
                store=store, broker=InMemoryBroker(), policies=engine, agents=InMemoryAgentRegistry()
            )
            app = create_app(Settings(data_dir=tmp_path / "data", auth={"enabled": True}), ports)
            issued = await token_cases.issue(
                ports, subject="admin", role=Role.admin, description="", created_by="t"
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
                yield client, issued.secret
    finally:
        engine.close()


def test_the_installed_pyyaml_has_libyaml_and_the_loader_uses_it() -> None:
    assert bodies.HAS_LIBYAML, "PyYAML was built without libyaml: YAML bodies would parse 4x slower"
    assert issubclass(bodies._Loader, yaml.CSafeLoader)


async def test_yaml_is_parsed_once_off_the_event_loop_after_authentication(
    secured: tuple[httpx.AsyncClient, str], spy: ParseSpy
) -> None:
    api, token = secured
    doc = yaml.safe_dump(factories.zone(name="dmz")).encode()
    refused = await api.post("/documents/zone", content=doc, headers=YAML)
    assert refused.status_code == 401
    assert spy.threads == []  # no token, no parse
    created = await api.post(
        "/documents/zone", content=doc, headers={**YAML, "Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    assert len(spy.threads) == 1  # the access check and the route share one parse
    assert spy.threads[0].startswith("stackl-yaml")
    assert spy.threads[0] != threading.main_thread().name


async def test_the_api_answers_while_a_yaml_body_is_being_parsed(
    secured: tuple[httpx.AsyncClient, str], spy: ParseSpy
) -> None:
    api, token = secured
    spy.gate.clear()  # the parse starts and waits: a parse on the event loop would stall everything now
    doc = yaml.safe_dump(factories.zone(name="dmz")).encode()
    post = asyncio.create_task(
        api.post("/documents/zone", content=doc, headers={**YAML, "Authorization": f"Bearer {token}"})
    )
    assert await asyncio.to_thread(spy.entered.wait, 30)
    health = await api.get("/healthz")
    assert health.status_code == 200
    assert not post.done()
    spy.gate.set()
    assert (await post).status_code == 201


async def test_an_alias_bomb_is_refused_without_expanding_it(api: httpx.AsyncClient) -> None:
    levels, previous = ["a: &a [x, x, x, x, x, x, x, x, x, x]"], "a"
    for i in range(12):  # 10**13 values once expanded, from 1 kB
        levels.append(f"l{i}: &l{i} [{', '.join([f'*{previous}'] * 10)}]")
        previous = f"l{i}"
    response = await api.post("/documents/zone", content="\n".join(levels).encode(), headers=YAML)
    assert response.status_code == 413
    assert "aliases" in response.json()["detail"]


def test_deeply_nested_values_are_counted_without_recursion() -> None:
    value: Any = "leaf"
    for _ in range(5000):
        value = [value]
    assert bodies.expanded_nodes(value) == 5001


@pytest.mark.parametrize(
    ("content", "media"),
    [
        (
            json.dumps(factories.zone(name="dmz"))[:-1] + f', "params": {{"x": [1, {BIG}]}}}}',
            "application/json",
        ),
        (yaml.safe_dump(factories.zone(name="dmz")) + f"params:\n  x: [1, {BIG}]\n", "application/yaml"),
        (yaml.safe_dump(factories.zone(name="dmz")) + f"params:\n  x: [1, -{BIG}]\n", "application/yaml"),
        (
            yaml.safe_dump(factories.zone(name="dmz")) + f"params:\n  x: [1, 0x{'f' * 5000}]\n",
            "application/yaml",
        ),
    ],
    ids=["json", "yaml", "yaml-negative", "yaml-hex"],
)
async def test_an_integer_too_long_to_convert_is_a_400_naming_the_field(
    api: httpx.AsyncClient, content: str, media: str
) -> None:
    response = await api.post("/documents/zone", content=content.encode(), headers={"Content-Type": media})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "params", "x", 1]
    assert "params.x.1" in problem["detail"]
    assert "digits" in problem["detail"]


async def test_a_float_that_overflows_is_a_400_naming_the_field(api: httpx.AsyncClient) -> None:
    content = json.dumps(factories.zone(name="dmz"))[:-1] + ', "params": {"x": 1e999}}'
    response = await api.post(
        "/documents/zone", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "params", "x"]


async def test_several_yaml_documents_where_one_is_expected_are_a_400(api: httpx.AsyncClient) -> None:
    text = yaml.safe_dump(factories.zone(name="a")) + "---\n" + yaml.safe_dump(factories.zone(name="b"))
    response = await api.post("/documents/zone", content=text.encode(), headers=YAML)
    assert response.status_code == 400
    assert "expected one YAML document" in response.json()["detail"]
    bulk = await api.post("/documents", content=text.encode(), headers=YAML)
    assert bulk.status_code == 200, bulk.text
