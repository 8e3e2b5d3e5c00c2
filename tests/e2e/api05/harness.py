"""The machinery of the 0.5 API tests (tests/e2e/test_api05_e2e.py): documents, comparisons, replays.

0.5's tests compared each answer with what they expected using plain ``assert``. `expect` and
`expect_listed` make the same comparisons and tell a `Known` difference (the exact answer STACKL gives on
purpose instead) from any other difference: the first raises `KnownDifference`, which the xfail marks of the
tests name in ``raises=``, the second a plain `AssertionError`, which fails the run. So an xfail test still
fails when it starts to differ from 0.5 in a new way.

The 0.5 tests ran in file order on one shared store; `Api05.after` replays the writes of the 0.5 tests that
ran before one (`Write` lists), and `empty` deletes every document, so each test here starts from the state
0.5 gave it and none depends on another.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

DATA = Path(__file__).parent
MASK = "********"
ANY_BODY: Any = object()
"""Do not compare the body (the 0.5 test checked the status only)."""

Write = tuple[str, str, Any]
"""(method, path, JSON body or None) of one request that changed 0.5's store."""


def load(name: str) -> dict[str, Any]:
    """The documents of one 0.5 test module, keyed by the name of the 0.5 variable that held each."""
    documents: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return documents


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as STACKL answers it: every secret value replaced by the mask (0.5 echoed them)."""
    return {**doc, "secrets": dict.fromkeys(doc["secrets"], MASK)}


class KnownDifference(AssertionError):
    """An answer that differs from 0.5's expectation in exactly the documented way."""


@dataclass(frozen=True)
class Known:
    """A difference on purpose: the answer STACKL gives where a 0.5 test expected another, and why."""

    reason: str
    status: int
    body: Any = ANY_BODY
    loc: tuple[str | int, ...] | None = None
    """For a 422: a field its problem body must name (an ``errors[].loc``, after ``body``)."""

    def explains(self, response: httpx.Response) -> bool:
        """Whether `response` is exactly this difference."""
        if response.status_code != self.status:
            return False
        if self.loc is not None:
            named = [tuple(error["loc"]) for error in response.json().get("errors", [])]
            return ("body", *self.loc) in named
        return self.body is ANY_BODY or response.json() == self.body

    @property
    def mark(self) -> pytest.MarkDecorator:
        """The strict xfail of a test that shows this difference, passing only on `KnownDifference`."""
        return pytest.mark.xfail(strict=True, raises=KnownDifference, reason=self.reason)


def _differs(response: httpx.Response, expected: str, known: Known | None) -> None:
    if known is not None and known.explains(response):
        raise KnownDifference(f"{known.reason} (answer: {response.status_code} {response.text[:300]})")
    request = response.request
    raise AssertionError(
        f"{request.method} {request.url.path}: 0.5 expected {expected}; "
        f"got {response.status_code} {response.text[:2000]}"
    )


def expect(
    response: httpx.Response, status: int, body: Any = ANY_BODY, *, known: Known | None = None
) -> None:
    """0.5's ``assert response.status_code == status`` and ``assert response.json() == body``."""
    if response.status_code == status and (body is ANY_BODY or response.json() == body):
        return
    _differs(response, f"{status} {'' if body is ANY_BODY else json.dumps(body)}", known)


def expect_listed(
    response: httpx.Response, *docs: Any, listed: bool = True, known: Known | None = None
) -> None:
    """0.5's ``assert response.status_code == 200`` and ``assert doc in response.json()`` (or ``not in``)."""
    if response.status_code == 200 and all((doc in response.json()) is listed for doc in docs):
        return
    _differs(response, f"200 with {'' if listed else 'none of '}{json.dumps(docs)} listed", known)


def empty(client: httpx.Client) -> None:
    """Delete every document of the server (``?force=true``: references do not matter here)."""
    found: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/documents", params=params)
        assert page.status_code == 200, page.text
        found += [(item["type"], item["name"]) for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    for doc_type, name in found:
        gone = client.delete(f"/documents/{doc_type}/{name}", params={"force": "true"})
        assert gone.status_code == 204, gone.text


class Api05:
    """HTTP on the server under test, as 0.5's tests used their ``TestClient``, with their writes to replay."""

    def __init__(self, client: httpx.Client, writes: dict[str, tuple[Write, ...]]) -> None:
        self.client = client
        self.writes = writes

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def post(self, path: str, doc: Any) -> httpx.Response:
        return self.client.post(path, json=doc)

    def put(self, path: str, doc: Any) -> httpx.Response:
        return self.client.put(path, json=doc)

    def delete(self, path: str) -> httpx.Response:
        return self.client.delete(path)

    def after(self, *tests: str) -> None:
        """Leave the store as these 0.5 tests left it: their writes, in order, their answers unchecked."""
        for test in tests:
            for method, path, body in self.writes[test]:
                self.client.request(method, path, json=body)
