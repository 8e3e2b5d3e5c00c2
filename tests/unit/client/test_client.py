import json

import httpx
import pytest
from tests import factories
from tests.unit.client.fakeserver import FakeServer, problem

from stackl import errors
from stackl.client.client import StacklClient, redact_url, segment

URL = "http://stackl.test"


@pytest.fixture
def server() -> FakeServer:
    fake = FakeServer()
    fake.seed(factories.environment(), factories.location(), factories.zone(), factories.zone("internal"))
    return fake


def client(server: FakeServer, token: str | None = None) -> StacklClient:
    return StacklClient(URL, transport=server.transport(), token=token)


async def test_bearer_token_is_sent_only_when_set(server: FakeServer) -> None:
    async with client(server, token="s3cr3t") as api:
        await api.version()
    async with client(server) as api:
        await api.version()
    assert server.requests[0].headers["authorization"] == "Bearer s3cr3t"
    assert "authorization" not in server.requests[1].headers


async def test_list_documents_follows_every_page(server: FakeServer) -> None:
    server.seed(factories.zone("a"), factories.zone("b"), factories.zone("c"))
    async with client(server) as api:
        zones = await api.list_documents("zone")
    assert [z["name"] for z in zones] == ["a", "b", "c", "dmz", "internal"]
    assert [r.url.params.get("cursor") for r in server.requests] == [None, "2", "4"]


async def test_a_repeated_cursor_stops_the_listing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [{"name": "x"}], "next_cursor": "same"})

    async with StacklClient(URL, transport=httpx.MockTransport(handler)) as api:
        with pytest.raises(errors.StacklError, match="cursor 'same' twice"):
            await api.list_documents("zone")


async def test_list_revisions_stops_at_the_limit(server: FakeServer) -> None:
    for port in range(5):
        server.write(factories.zone(params={"port": port}), "update")
    async with client(server) as api:
        entries = await api.list_revisions("zone", "dmz", limit=3)
    assert [e["revision"] for e in entries] == [6, 5, 4]


async def test_warnings_are_kept_per_response_and_accumulated(server: FakeServer) -> None:
    server.seed(factories.service(), factories.functional_requirement())
    async with client(server) as api:
        await api.replace_document(
            "service", "webserver", factories.service(functional_requirements=["vm", "ghost"])
        )
        assert api.last_warnings == ["functional_requirement 'ghost' does not exist"]
        await api.version()
        assert api.last_warnings == []
        assert api.warnings == ["functional_requirement 'ghost' does not exist"]


async def test_replace_sends_if_match_and_maps_412(server: FakeServer) -> None:
    async with client(server) as api:
        saved = await api.replace_document("zone", "dmz", factories.zone(description="x"), if_match=1)
        assert saved["metadata"]["revision"] == 2
        with pytest.raises(errors.PreconditionFailed) as caught:
            await api.replace_document("zone", "dmz", factories.zone(description="y"), if_match=1)
    assert server.requests[0].headers["if-match"] == '"1"'
    assert caught.value.current_revision == 2


async def test_whoami_tolerates_a_server_without_it() -> None:
    async with StacklClient(URL, transport=FakeServer(whoami=False).transport()) as api:
        assert await api.whoami() is None
    async with StacklClient(URL, transport=FakeServer().transport()) as api:
        assert await api.whoami() == {"subject": "local", "roles": ["admin"]}


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")]
)
async def test_transport_failures_are_server_unreachable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with StacklClient("http://h:1/t/tok", transport=httpx.MockTransport(handler), timeout_s=2) as api:
        with pytest.raises(errors.ServerUnreachable) as caught:
            await api.version()
    assert "tok" not in caught.value.message
    assert "http://h:1/t/********" in caught.value.message


async def test_error_responses_raise_the_server_class(server: FakeServer) -> None:
    async with client(server) as api:
        with pytest.raises(errors.NotFound, match="zone 'nope' not found"):
            await api.get_document("zone", "nope")
        server.fail_next = problem(503, "unavailable", "database down")
        with pytest.raises(errors.Unavailable, match="database down"):
            await api.version()


async def test_names_cannot_escape_their_path_segment(server: FakeServer) -> None:
    async with client(server) as api:
        with pytest.raises(errors.NotFound):
            await api.get_document("zone", "../../version")
        with pytest.raises(errors.NotFound):
            await api.get_document("zone", "..")
    assert server.requests[0].url.raw_path == b"/documents/zone/..%2F..%2Fversion"
    assert server.requests[1].url.raw_path == b"/documents/zone/%2E%2E"
    assert segment("a b") == "a%20b"


async def test_apply_documents_posts_one_json_array(server: FakeServer) -> None:
    docs = [factories.zone("blue"), factories.zone("dmz", description="changed")]
    async with client(server) as api:
        result = await api.apply_documents(docs, dry_run=True, diff=True)
    request = server.requests[0]
    assert json.loads(request.content) == docs
    assert request.headers["content-type"] == "application/json"
    assert dict(request.url.params) == {"dry_run": "true", "diff": "true"}
    assert [(r["action"], r["name"]) for r in result["results"]] == [("created", "blue"), ("updated", "dmz")]
    assert server.current("zone", "blue") is None


async def test_restore_of_an_instance_reports_its_task(server: FakeServer) -> None:
    server.seed({"name": "shop", "type": "stack_instance", "category": "items"})
    async with client(server) as api:
        task = await api.restore_document("stack_instance", "shop", 1)
        assert api.last is not None
        assert api.last.status == 202
        assert api.last.task_id == task["id"] == "01TASKRESTORE"


async def test_snapshot_calls_use_the_0_5_paths(server: FakeServer) -> None:
    async with client(server) as api:
        created = await api.create_snapshot("zone", "dmz", description="before")
        assert created["description"] == "before"
        assert (await api.get_snapshot(created["name"]))["snapshot"]["name"] == "dmz"
        assert [s["name"] for s in await api.list_snapshots("zone", "dmz")] == [created["name"]]
        assert await api.restore_snapshot(created["name"]) == {
            "result": f"snapshot {created['name']} restored"
        }
        assert await api.delete_snapshot(created["name"]) == {"result": f"deleted snapshot {created['name']}"}
    assert json.loads(server.requests[0].content) == {"description": "before"}
    assert [r.url.path for r in server.requests][1:] == [
        f"/snapshots/{created['name']}",
        "/snapshots/zone/dmz",
        f"/snapshots/restore/{created['name']}",
        f"/snapshots/{created['name']}",
    ]


async def test_revision_header_is_recorded(server: FakeServer) -> None:
    template = factories.policy_template()
    async with client(server) as api:
        await api.put_policy_template(template)
        assert api.last is not None
        assert api.last.revision == 1


async def test_invalid_json_on_success_is_an_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"<html>"))
    async with StacklClient(URL, transport=transport) as api:
        with pytest.raises(errors.StacklError, match="invalid JSON"):
            await api.version()


async def test_trace_masks_the_token_and_the_token_path() -> None:
    lines: list[str] = []
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json="fake-host"))
    async with StacklClient(
        URL + "/t/pathtoken", token="s3cr3t", transport=transport, trace=lines.append
    ) as api:
        assert await api.about() == "fake-host"
    trace = "\n".join(lines)
    assert "> GET http://stackl.test/t/********/about" in trace
    assert "> authorization: Bearer ********" in trace
    assert "< 200 OK" in trace
    assert "s3cr3t" not in trace
    assert "pathtoken" not in trace


async def test_a_path_prefix_of_the_server_url_is_kept() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"version": "0.1.0"})

    async with StacklClient("https://h/stackl/", transport=httpx.MockTransport(handler)) as api:
        await api.version()
    assert seen == ["/stackl/version"]


async def test_use_outside_async_with_is_a_bug() -> None:
    api = StacklClient(URL)
    with pytest.raises(RuntimeError, match="async with"):
        await api.version()


def test_redact_url_leaves_other_urls_alone() -> None:
    assert redact_url("https://h/api/documents") == "https://h/api/documents"
    assert redact_url("https://h/t/abc/documents") == "https://h/t/********/documents"
