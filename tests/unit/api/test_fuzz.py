"""Property test: no body, however wrong, makes a write endpoint answer 5xx (issue: bad input never 500s)."""

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import factories

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases.ports import Ports

WRITE_PATHS = [
    ("POST", "/documents/environment"),
    ("POST", "/documents/functional_requirement"),
    ("POST", "/documents/service"),
    ("POST", "/documents/stack_application_template"),
    ("POST", "/documents/stack_infrastructure_template"),
    ("POST", "/documents/policy_template"),
    ("POST", "/documents"),
    ("PUT", "/infrastructure_base"),
    ("PUT", "/functional_requirements"),
    ("POST", "/services"),
    ("PUT", "/stack_application_templates"),
    ("POST", "/stack_infrastructure_templates"),
    ("PUT", "/policy_templates"),
    ("PATCH", "/documents/zone/dmz"),
    ("POST", "/documents/zone/dmz/restore"),
    ("POST", "/snapshots/zone/dmz"),
]


class Digits(str):
    """An integer literal written as digits, too long for Python to convert (issue 15: 5,000-digit numbers)."""

    __slots__ = ()


huge_integers = st.builds(
    lambda sign, digits: Digits(f"{sign}1{digits}"),
    st.sampled_from(["", "-"]),
    st.text(alphabet="0123456789", min_size=4300, max_size=6000),
)
large_integers = st.integers(min_value=2**31 - 2, max_value=10**40) | st.integers(
    max_value=-(2**31), min_value=-(10**40)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | large_integers
    | huge_integers
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)


def dumps(value: object) -> str:
    """JSON text of ``value``, with every ``Digits`` written as a bare number."""
    found: list[Digits] = []

    def mark(item: object) -> object:
        if isinstance(item, Digits):
            found.append(item)
            return f"\x00{len(found) - 1}\x00"
        if isinstance(item, list):
            return [mark(i) for i in item]
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        return item

    text = json.dumps(mark(value))
    for index, digits in enumerate(found):
        text = text.replace(f'"\\u0000{index}\\u0000"', str.__str__(digits), 1)
    return text


json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
FIELDS = [
    "name",
    "type",
    "category",
    "description",
    "params",
    "secrets",
    "resources",
    "tags",
    "packages",
    "policies",
    "agent",
    "invocation",
    "functional_requirements",
    "services",
    "stages",
    "infrastructure_targets",
    "policy",
    "inputs",
    "outputs",
    "resource_requirements",
    "service_policies",
    "cloud_provider",
    "revision",
    "metadata",
]
near_documents = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(FIELDS, json_values),
)


@dataclass
class SyncClient:
    """Hypothesis drives plain functions: this runs each request on one long-lived event loop."""

    runner: asyncio.Runner
    client: httpx.AsyncClient

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.runner.run(self.client.request(method, path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[SyncClient]:
    store = InMemoryDocumentStore()
    app = create_app(
        Settings(data_dir=tmp_path / "data"),
        Ports(
            store=store,
            broker=InMemoryBroker(),
            policies=StaticPolicyEngine(),
            agents=InMemoryAgentRegistry(),
        ),
    )
    with asyncio.Runner() as runner:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        http = httpx.AsyncClient(transport=transport, base_url="http://stackl.test")
        sync = SyncClient(runner, http)
        sync.post("/documents/zone", json=factories.zone(name="dmz"))
        try:
            yield sync
        finally:
            runner.run(http.aclose())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(WRITE_PATHS), body=near_documents | json_values)
def test_json_bodies_never_5xx(client: SyncClient, route: tuple[str, str], body: object) -> None:
    method, path = route
    response = client.request(method, path, content=dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        problem = response.json()
        assert isinstance(problem["detail"], str)
        assert problem["code"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(WRITE_PATHS),
    raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(["application/json", "application/yaml", "text/yaml", "text/plain", ""]),
)
def test_raw_bytes_never_5xx(
    client: SyncClient, route: tuple[str, str], raw: bytes, content_type: str
) -> None:
    method, path = route
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.request(method, path, content=raw, headers=headers)
    assert response.status_code < 500, response.text


def test_yaml_alias_bomb_is_refused(client: SyncClient) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    response = client.post("/documents/zone", content=bomb, headers={"Content-Type": "application/yaml"})
    assert response.status_code in (400, 413, 422)


revision_like = (
    st.integers(min_value=-(10**40), max_value=10**40).map(str)
    | huge_integers.map(str.__str__)
    | st.text(alphabet='0123456789-+W/" xe', max_size=24)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=revision_like,
    where=st.sampled_from(["if-match", "query", "diff", "restore", "replicas", "attempt"]),
)
def test_numbers_in_headers_queries_and_paths_never_5xx(client: SyncClient, value: str, where: str) -> None:
    """Revision numbers, replica counts and attempts of any size: a 4xx naming the field, never a 5xx."""
    if where == "if-match":
        response = client.request(
            "PUT", "/documents/zone/dmz", json=factories.zone(), headers={"If-Match": value}
        )
    elif where == "query":
        response = client.request("GET", "/documents/zone/dmz", params={"revision": value})
    elif where == "diff":
        response = client.request("GET", f"/documents/zone/dmz/revisions/1/diff/{value or 0}")
    elif where == "attempt":
        response = client.request(
            "GET", f"/tasks/t1/steps/web/{value or 0}/vm/log", params={"attempt": value}
        )
    else:
        number = value if value.lstrip("-").isdigit() else "1"
        body = (
            '"revision": NUMBER'
            if where == "restore"
            else '"stack_instance_name": "shop", "replicas": {"web": NUMBER}'
        )
        text = "{" + body.replace("NUMBER", number) + "}"
        path = "/documents/zone/dmz/restore" if where == "restore" else "/stack_instances/plan"
        response = client.request("POST", path, content=text, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
