import asyncio
import json
from typing import Any

import httpx
import pytest
import typer
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer, problem

from stackl import errors
from stackl.cli import context, exits


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (400, "malformed", 3),
        (401, "unauthorized", 6),
        (403, "forbidden", 6),
        (404, "not_found", 4),
        (405, "method_not_allowed", 3),
        (409, "already_exists", 5),
        (409, "referenced", 5),
        (409, "instance_busy", 5),
        (409, "conflict", 5),
        (412, "precondition_failed", 5),
        (413, "payload_too_large", 3),
        (415, "unsupported_media_type", 3),
        (422, "validation", 3),
        (422, "missing_references", 3),
        (422, "placement_failed", 3),
        (422, "policy_error", 3),
        (422, "idempotency_key_reused", 3),
        (429, "rate_limited", 7),
        (503, "unavailable", 7),
        (500, "internal", 1),
        (418, "brand_new_code", 1),
        (409, "brand_new_conflict", 5),
    ],
)
def test_every_problem_code_has_its_exit_code(
    cli: Invoke, server: FakeServer, status: int, code: str, exit_code: int
) -> None:
    server.fail_next = problem(status, code, f"{code} happened")
    result = cli("get", "zone", "dmz")
    assert result.exit_code == exit_code
    assert result.stderr.startswith(f"Error: {code} happened\n")
    assert result.stdout == ""


@pytest.mark.parametrize(("status", "exit_code"), [(502, 1), (503, 7), (404, 4), (401, 6)])
def test_non_json_errors_map_by_status(cli: Invoke, server: FakeServer, status: int, exit_code: int) -> None:
    server.fail_next = httpx.Response(
        status, text="<html>proxy says no</html>", headers={"content-type": "text/html"}
    )
    result = cli("get", "zones")
    assert result.exit_code == exit_code
    assert "proxy says no" in result.stderr


def test_errors_entries_are_printed_as_loc_and_msg(cli: Invoke, server: FakeServer) -> None:
    items: list[dict[str, Any]] = [
        {
            "loc": ["body", "invocation", "generic", "tool"],
            "msg": "must be one of ansible, shell",
            "type": "enum",
        },
        {"loc": ["body", "packages", 2], "msg": "duplicate", "type": "unique"},
        {"loc": [], "msg": "whole body", "type": "x"},
    ]
    server.fail_next = problem(422, "validation", "3 errors", items)
    result = cli("get", "zones")
    assert result.stderr.splitlines() == [
        "Error: 3 errors",
        "  invocation.generic.tool: must be one of ansible, shell",
        "  packages[2]: duplicate",
        "  whole body",
    ]


def test_placement_explanations_are_summarised(cli: Invoke, server: FakeServer) -> None:
    candidate = {
        "result": "rejected",
        "checks": [{"check": "resources", "result": "fail", "details": ["memory: needs 16GiB, has 8GiB"]}],
    }
    explanation = {
        "services": {"db": {"service": "postgres", "replicas": 1, "candidates": {"p.b.z": candidate}}}
    }
    server.fail_next = problem(
        422, "placement_failed", 'Could not find a target for services {"db"}', explanation=explanation
    )
    result = cli("get", "zones")
    assert result.exit_code == 3
    assert "  db (postgres): 0/1 placed" in result.stderr
    assert "    p.b.z: rejected, resources: memory: needs 16GiB, has 8GiB" in result.stderr


def test_json_output_prints_the_problem_body_as_is(cli: Invoke, server: FakeServer) -> None:
    server.fail_next = problem(404, "not_found", "zone 'x' not found")
    result = cli("get", "zone", "x", "-o", "json")
    assert result.exit_code == 4
    assert json.loads(result.stderr)["code"] == "not_found"


def test_an_unreachable_server_exits_7_with_a_hint(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(context, "TRANSPORT_FACTORY", lambda: httpx.MockTransport(refuse))
    result = cli("get", "zones")
    assert result.exit_code == 7
    assert "Error: cannot reach the STACKL server at http://127.0.0.1:8080" in result.stderr
    assert "hint: is the server running?" in result.stderr
    assert "hint" not in cli("-q", "get", "zones").stderr


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.OperationFailed(), 8),
        (errors.WaitTimedOut(), 9),
        (errors.ServerUnreachable(), 7),
        (errors.StoreUnavailable(), 7),
        (errors.InvalidDocument(), 3),
        (errors.RevisionNotFound("zone", "dmz", 3), 4),
        (errors.RevisionConflict(), 5),
        (errors.ToolFailed(), 1),
        (exits.UsageFailure("bad file"), 2),
        (ValueError("a bug"), 1),
    ],
)
def test_exit_code_walks_the_mro(exc: BaseException, code: int) -> None:
    assert exits.exit_code(exc) == code


def test_ctrl_c_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as caught:
        exits.run(interrupted())
    assert caught.value.exit_code == 130
    assert "Interrupted" in capsys.readouterr().err


def test_run_returns_the_result() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 42

    assert exits.run(work()) == 42
