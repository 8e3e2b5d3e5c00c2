import json
from typing import Any

import pytest

from stackl import errors
from stackl.client import problems


def body(code: str, status: int, detail: str = "it failed", **extra: Any) -> bytes:
    return json.dumps(
        {
            "type": f"urn:stackl:problem:{code}",
            "code": code,
            "status": status,
            "detail": detail,
            "errors": [],
            **extra,
        }
    ).encode()


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("malformed", 400, errors.Malformed),
        ("unauthorized", 401, errors.Unauthenticated),
        ("forbidden", 403, errors.Forbidden),
        ("not_found", 404, errors.NotFound),
        ("method_not_allowed", 405, errors.MethodNotAllowed),
        ("already_exists", 409, errors.AlreadyExists),
        ("already_exists", 422, errors.InstanceExists),  # a stack instance create keeps 0.5's 422
        ("referenced", 409, errors.Referenced),
        ("instance_busy", 409, errors.InstanceBusy),
        ("conflict", 409, errors.Conflict),
        ("precondition_failed", 412, errors.PreconditionFailed),
        ("payload_too_large", 413, errors.PayloadTooLarge),
        ("unsupported_media_type", 415, errors.UnsupportedMediaType),
        ("validation", 422, errors.InvalidDocument),
        ("missing_references", 422, errors.MissingReferences),
        ("placement_failed", 422, errors.PlacementFailed),
        ("policy_error", 422, errors.PolicyError),
        ("idempotency_key_reused", 422, errors.IdempotencyKeyReused),
        ("rate_limited", 429, errors.RateLimited),
        ("unavailable", 503, errors.Unavailable),
        ("internal", 500, errors.StacklError),
    ],
)
def test_every_code_rebuilds_its_class_with_detail_as_message(
    code: str, status: int, cls: type[errors.StacklError]
) -> None:
    exc = problems.from_response(status, body(code, status), "application/problem+json")
    assert type(exc) is cls
    assert exc.message == "it failed"
    assert str(exc) == "it failed"
    assert problems.body_of(exc) == json.loads(body(code, status))


def test_referenced_keeps_referrers_and_errors() -> None:
    referrers = [{"type": "service", "name": "webserver", "path": "functional_requirements[0]"}]
    items = [
        {
            "loc": ["references", "service", "webserver"],
            "msg": "references functional_requirement 'vm'",
            "type": "referenced",
        }
    ]
    exc = problems.from_response(
        409, body("referenced", 409, referrers=referrers, errors=items), "application/problem+json"
    )
    assert isinstance(exc, errors.Referenced)
    assert exc.referrers == referrers
    assert exc.errors == items


def test_extras_become_attributes() -> None:
    stale = problems.from_response(412, body("precondition_failed", 412, current_revision=7))
    assert isinstance(stale, errors.PreconditionFailed)
    assert stale.current_revision == 7
    placement = problems.from_response(422, body("placement_failed", 422, explanation={"services": {}}))
    assert isinstance(placement, errors.PlacementFailed)
    assert placement.explanation == {"services": {}}
    denied = problems.from_response(403, body("forbidden", 403, reasons=["viewers cannot write"]))
    assert isinstance(denied, errors.Forbidden)
    assert denied.reasons == ["viewers cannot write"]
    busy = problems.from_response(409, body("instance_busy", 409, task_id="01T", task_kind="update"))
    assert isinstance(busy, errors.InstanceBusy)
    assert (busy.task_id, busy.task_kind) == ("01T", "update")


def test_missing_members_take_their_defaults() -> None:
    exc = problems.from_response(409, body("referenced", 409))
    assert isinstance(exc, errors.Referenced)
    assert exc.referrers == []
    stale = problems.from_response(412, body("precondition_failed", 412))
    assert isinstance(stale, errors.PreconditionFailed)
    assert stale.current_revision is None


def test_missing_references_lists_the_missing_documents() -> None:
    items = [{"loc": ["references", "service", "db"], "msg": "does not exist", "type": "missing"}]
    exc = problems.from_response(422, body("missing_references", 422, errors=items))
    assert isinstance(exc, errors.MissingReferences)
    assert exc.missing == [("service", "db")]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.Malformed),
        (401, errors.Unauthenticated),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (405, errors.MethodNotAllowed),
        (409, errors.Conflict),
        (412, errors.PreconditionFailed),
        (413, errors.PayloadTooLarge),
        (415, errors.UnsupportedMediaType),
        (422, errors.InvalidInput),
        (503, errors.Unavailable),
        (500, errors.StacklError),
        (502, errors.StacklError),
    ],
)
def test_unknown_code_falls_back_on_the_status(status: int, cls: type[errors.StacklError]) -> None:
    exc = problems.from_response(status, body("something_new", status))
    assert type(exc) is cls
    assert exc.message == "it failed"


def test_non_json_body_keeps_its_text() -> None:
    exc = problems.from_response(502, b"<html>Bad gateway</html>", "text/html")
    assert type(exc) is errors.StacklError
    assert exc.message == "HTTP 502 Bad Gateway: <html>Bad gateway</html>"
    assert problems.body_of(exc) is None
    unavailable = problems.from_response(503, b"", "text/plain")
    assert isinstance(unavailable, errors.Unavailable)
    assert unavailable.message == "HTTP 503 Service Unavailable"


def test_long_text_is_cut() -> None:
    exc = problems.from_response(500, b"x" * 5000, "text/plain")
    assert len(exc.message) < 600


def test_fastapi_default_validation_body() -> None:
    content = json.dumps(
        {"detail": [{"loc": ["query", "limit"], "msg": "too big", "type": "less_than_equal"}]}
    )
    exc = problems.from_response(422, content.encode(), "application/json")
    assert isinstance(exc, errors.InvalidInput)
    assert exc.errors == [{"loc": ["query", "limit"], "msg": "too big", "type": "less_than_equal"}]
    assert exc.message == "1 error"


def test_non_string_detail_falls_back_on_title() -> None:
    content = json.dumps({"code": "conflict", "title": "Conflict", "detail": None, "errors": "garbage"})
    exc = problems.from_response(409, content.encode(), "application/problem+json")
    assert isinstance(exc, errors.Conflict)
    assert exc.message == "Conflict"
    assert exc.errors == []


def test_invalid_json_with_json_content_type_is_handled_as_text() -> None:
    exc = problems.from_response(404, b"{not json", "application/json")
    assert isinstance(exc, errors.NotFound)
    assert exc.message == "HTTP 404 Not Found: {not json"


def test_rate_limited_keeps_its_retry_after() -> None:
    problem = {"code": "rate_limited", "status": 429, "detail": "slow down", "retry_after_s": 7.5}
    exc = problems.from_response(429, json.dumps(problem).encode(), "application/problem+json")
    assert isinstance(exc, errors.RateLimited)
    assert exc.retry_after_s == 7.5
    bare = problems.from_response(429, b"", "text/plain")
    assert isinstance(bare, errors.RateLimited)
    assert bare.retry_after_s == 1.0
