"""StacklClient: the async REST client of the STACKL API, one method per operation the CLI uses.

The CLI is a pure REST client (STYLE §2): every command goes through this class, so no request is written
twice and tests can inject any ``httpx`` transport (``httpx.MockTransport``, ``httpx.ASGITransport`` on the
in-process app). Errors come back as the StacklError subclass the server raised (``client/problems.py``);
a server that cannot be reached, a TLS failure or a timeout is ``errors.ServerUnreachable``. Each response's
``Stackl-Warning`` headers, task id and revision are kept in ``last`` and warnings accumulate in
``warnings``, for callers that report them after the command's own output.
"""

import json
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from stackl import __version__, errors
from stackl.client import problems
from stackl.domain.secrets import MASK

JsonDict = dict[str, Any]
PAGE_LIMIT = 1000  # items per page asked of list endpoints: the API's maximum (spec/api.md §0.5)
WARNING_HEADER = "Stackl-Warning"
TASK_HEADER = "Stackl-Task-Id"
REVISION_HEADER = "Stackl-Revision"
_TOKEN_PATH = re.compile(r"/t/[^/?#]+")


@dataclass(frozen=True)
class ResponseMeta:
    """What a response said besides its body."""

    status: int
    warnings: tuple[str, ...] = ()
    task_id: str | None = None
    revision: int | None = None


@dataclass
class _Paging:
    """Cursor bookkeeping of one listing, so a server repeating a cursor cannot loop the client forever."""

    seen: set[str] = field(default_factory=set)

    def next(self, body: Any) -> str | None:
        cursor = body.get("next_cursor") if isinstance(body, Mapping) else None
        if not cursor:
            return None
        if cursor in self.seen:
            raise errors.StacklError(f"the server returned cursor {cursor!r} twice")
        self.seen.add(str(cursor))
        return str(cursor)


def redact_url(url: str) -> str:
    """A URL with a ``/t/<token>`` path prefix (spec/api.md §0.2) masked, for traces and messages."""
    return _TOKEN_PATH.sub(f"/t/{MASK}", url)


def segment(value: str) -> str:
    """One path segment, percent-encoded, so a name can never climb the path (``..``) or add segments."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


class StacklClient:
    """Async client of one STACKL server.

    Use as ``async with StacklClient(url, token=...) as client:``; every method raises the StacklError
    subclass of the server's problem body, or ``errors.ServerUnreachable`` when no answer came.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: str | bool | ssl.SSLContext = True,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        """Describe the connection; nothing is opened before ``__aenter__``.

        Args:
            base_url: the server's URL, e.g. ``http://127.0.0.1:8080`` (a path prefix is kept).
            token: API token sent as ``Authorization: Bearer``.
            timeout_s: limit of one HTTP request (connect, each read, each write).
            transport: an ``httpx`` transport to use instead of the network (tests).
            verify: TLS verification: True, False, the path of a CA bundle, or an SSL context.
            trace: called with one line per request and response (``-v``); tokens are masked.
        """
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        self._transport = transport
        self._verify = verify
        self._trace = trace
        self._http: httpx.AsyncClient | None = None
        self.last: ResponseMeta | None = None
        self.warnings: list[str] = []

    @property
    def last_warnings(self) -> list[str]:
        """The ``Stackl-Warning`` headers of the last response."""
        return list(self.last.warnings) if self.last else []

    async def __aenter__(self) -> Self:
        headers = {"User-Agent": f"stackl-cli/{__version__}", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self._verify) if isinstance(self._verify, str) else self._verify
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s),
            transport=self._transport,
            verify=verify,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- server ----------------------------------------------------------------------------------------
    async def version(self) -> JsonDict:
        """``GET /version``: version, API level, database and whether auth is enabled."""
        return dict(await self._json("GET", "/version"))

    async def about(self) -> str:
        """``GET /about``: the host name of the serving process."""
        return str(await self._json("GET", "/about"))

    async def whoami(self) -> JsonDict | None:
        """``GET /auth/whoami``: the caller's subject and roles; None from a server without the endpoint."""
        try:
            return dict(await self._json("GET", "/auth/whoami"))
        except errors.NotFound:
            return None

    # --- documents -------------------------------------------------------------------------------------
    async def apply_documents(
        self, docs: list[JsonDict], *, dry_run: bool = False, diff: bool = False
    ) -> JsonDict:
        """``POST /documents``: upsert every document in one transaction (or validate only, ``dry_run``).

        Returns:
            ``{dry_run, results: [{index, type, name, action, revision, warnings, patch?}]}``.
        """
        params = {k: "true" for k, on in (("dry_run", dry_run), ("diff", diff)) if on}
        return dict(await self._json("POST", "/documents", params=params, body=docs))

    async def list_documents(self, doc_type: str, name: str | None = None) -> list[JsonDict]:
        """``GET /documents/{type}``, every page: full documents, sorted by name; ``name`` is a substring."""
        params: dict[str, str | int] = {"limit": PAGE_LIMIT}
        if name:
            params["name"] = name
        return await self._pages(f"/documents/{segment(doc_type)}", params)

    async def get_document(self, doc_type: str, name: str, revision: int | None = None) -> JsonDict:
        """``GET /documents/{type}/{name}``: the document (full view with ``metadata``), or one revision."""
        params = {"revision": revision} if revision is not None else None
        return dict(await self._json("GET", self._doc_path(doc_type, name), params=params))

    async def replace_document(
        self, doc_type: str, name: str, body: JsonDict, if_match: int | None = None
    ) -> JsonDict:
        """``PUT /documents/{type}/{name}``; with ``if_match`` the write fails (412) if the revision moved."""
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        return dict(await self._json("PUT", self._doc_path(doc_type, name), body=body, headers=headers))

    async def delete_document(self, doc_type: str, name: str, force: bool = False) -> None:
        """``DELETE /documents/{type}/{name}``; ``force`` deletes a referenced document anyway."""
        params = {"force": "true"} if force else None
        await self._request("DELETE", self._doc_path(doc_type, name), params=params)

    async def list_revisions(self, doc_type: str, name: str, limit: int | None = None) -> list[JsonDict]:
        """``GET …/revisions``: history entries, newest first, at most ``limit`` of them."""
        params: dict[str, str | int] = {"limit": min(limit, PAGE_LIMIT) if limit else PAGE_LIMIT}
        return await self._pages(f"{self._doc_path(doc_type, name)}/revisions", params, limit=limit)

    async def diff_revisions(self, doc_type: str, name: str, a: int | str, b: int | str) -> JsonDict:
        """``GET …/revisions/{a}/diff/{b}`` (a number or ``latest`` each): ``{from, to, patch, text}``."""
        path = f"{self._doc_path(doc_type, name)}/revisions/{segment(str(a))}/diff/{segment(str(b))}"
        return dict(await self._json("GET", path))

    async def restore_document(self, doc_type: str, name: str, revision: int) -> JsonDict:
        """``POST …/restore``: write revision N again; a stack instance answers with its task (202)."""
        path = f"{self._doc_path(doc_type, name)}/restore"
        return dict(await self._json("POST", path, body={"revision": revision}))

    # --- snapshots (STACKL 0.5 paths) -------------------------------------------------------------------
    async def create_snapshot(
        self,
        doc_type: str,
        name: str,
        *,
        name_: str | None = None,
        description: str | None = None,
        revision: int | None = None,
    ) -> JsonDict:
        """``POST /snapshots/{type}/{name}``: copy the document (or one revision) into a named snapshot."""
        body = {
            k: v
            for k, v in (("name", name_), ("description", description), ("revision", revision))
            if v is not None
        }
        path = f"/snapshots/{segment(doc_type)}/{segment(name)}"
        return dict(await self._json("POST", path, body=body or None))

    async def get_snapshot(self, name: str) -> JsonDict:
        """``GET /snapshots/{name}`` (0.5 view)."""
        return dict(await self._json("GET", f"/snapshots/{segment(name)}"))

    async def list_snapshots(self, doc_type: str, name: str) -> list[JsonDict]:
        """``GET /snapshots/{type}/{name}``: the snapshots of one document, newest first (0.5 view)."""
        return [dict(s) for s in await self._json("GET", f"/snapshots/{segment(doc_type)}/{segment(name)}")]

    async def restore_snapshot(self, name: str) -> JsonDict:
        """``POST /snapshots/restore/{name}``: ``{"result": …}``; a stack instance also starts a task."""
        return dict(await self._json("POST", f"/snapshots/restore/{segment(name)}"))

    async def delete_snapshot(self, name: str) -> JsonDict:
        """``DELETE /snapshots/{name}``: ``{"result": "deleted snapshot <name>"}``."""
        return dict(await self._json("DELETE", f"/snapshots/{segment(name)}"))

    # --- policy templates (STACKL 0.5 path) -------------------------------------------------------------
    async def put_policy_template(self, body: JsonDict) -> JsonDict:
        """``PUT /policy_templates``: create or replace a policy template (422 ``policy_error``)."""
        return dict(await self._json("PUT", "/policy_templates", body=body))

    # --- placement and policies ------------------------------------------------------------------------
    async def plan_instance(self, body: JsonDict) -> JsonDict:
        """``POST /stack_instances/plan``: placement, explanation and step plan; nothing is written."""
        return dict(await self._json("POST", "/stack_instances/plan", body=body))

    # --- stack instances and tasks (STACKL 0.5 paths, api.md §A.8, §B.3) --------------------------------
    async def create_instance(self, body: JsonDict) -> JsonDict:
        """``POST /stack_instances``: the placement map; the task id is in ``self.last.task_id``."""
        return dict(await self._json("POST", "/stack_instances", body=body))

    async def get_instance(self, name: str) -> JsonDict:
        """``GET /stack_instances/{name}``: the 0.5 view (404 ``Stack instance not found``)."""
        return dict(await self._json("GET", f"/stack_instances/{segment(name)}"))

    async def delete_instance(self, name: str, *, force: bool = False) -> JsonDict:
        """``DELETE /stack_instances/{name}``: ``{"result": …}``; the task id is in ``self.last.task_id``."""
        params = {"force": "true"} if force else None
        return dict(await self._json("DELETE", f"/stack_instances/{segment(name)}", params=params))

    async def get_task(self, task_id: str, *, wait_s: float = 0, steps: bool = False) -> JsonDict:
        """``GET /tasks/{id}``; ``wait_s`` long-polls until the task changes (at most 30 s)."""
        params: dict[str, str | int] = {"wait": str(wait_s)} if wait_s else {}
        if steps:
            params["include"] = "steps"
        return dict(await self._json("GET", f"/tasks/{segment(task_id)}", params=params, wait_s=wait_s))

    async def update_instance(self, body: JsonDict) -> Any:
        """``PUT /stack_instances``: ``"Stack instance updating"``; the task id is in ``self.last.task_id``."""
        return await self._json("PUT", "/stack_instances", body=body)

    async def add_outputs(self, body: JsonDict) -> JsonDict:
        """``POST /outputs``: merge ``{stack_instance, service, infrastructure_target, outputs}``; the SI."""
        return dict(await self._json("POST", "/outputs", body=body))

    async def list_tasks(
        self,
        stack_instance: str | None = None,
        *,
        state: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[JsonDict]:
        """``GET /tasks``, newest first."""
        given = (("stack_instance", stack_instance), ("state", state), ("kind", kind), ("limit", limit))
        params: dict[str, str | int] = {k: v for k, v in given if v}
        body = await self._json("GET", "/tasks", params=params or None)
        return [dict(item) for item in body.get("items", [])]

    async def cancel_task(self, task_id: str, reason: str | None = None) -> JsonDict:
        """``POST /tasks/{id}/cancel``: the task (202); 409 when it is already final."""
        body = {"reason": reason} if reason else {}
        return dict(await self._json("POST", f"/tasks/{segment(task_id)}/cancel", body=body))

    # --- tokens and audit (api.md §B.6, §B.7) ----------------------------------------------------------------
    async def create_token(self, body: JsonDict) -> JsonDict:
        """``POST /auth/tokens``: the new token, its secret included (shown this once)."""
        return dict(await self._json("POST", "/auth/tokens", body=body))

    async def list_tokens(self, *, include_revoked: bool = False) -> list[JsonDict]:
        """``GET /auth/tokens``: tokens without secrets."""
        params: dict[str, str | int] = {"include_revoked": "true"} if include_revoked else {}
        return await self._pages("/auth/tokens", params)

    async def revoke_token(self, token_id: str) -> None:
        """``DELETE /auth/tokens/{id}``."""
        await self._json("DELETE", f"/auth/tokens/{segment(token_id)}")

    async def list_audit(self, *, limit: int | None = None, **filters: str | None) -> list[JsonDict]:
        """``GET /audit``, newest first; filters: ``subject``, ``action``, ``since``, ``resource_type``."""
        params: dict[str, str | int] = {k: v for k, v in filters.items() if v}
        if limit is not None:
            params["limit"] = min(limit, 1000)
        return await self._pages("/audit", params, limit=limit)

    # --- logs (api.md §B.2, §B.3): pages {items, next_cursor, more, finished} -----------------------------
    async def task_logs(
        self, task_id: str, *, cursor: str | None = None, wait_s: float = 0, **filters: str | None
    ) -> JsonDict:
        """``GET /tasks/{id}/logs``; filters ``service``, ``functional_requirement``, ``target``."""
        return await self._log_page(f"/tasks/{segment(task_id)}/logs", cursor, wait_s, filters)

    async def step_log(
        self,
        task_id: str,
        step: str,
        *,
        attempt: int | None = None,
        cursor: str | None = None,
        wait_s: float = 0,
    ) -> JsonDict:
        """``GET /tasks/{id}/steps/{alias}/{replica}/{fr}/log``; ``step`` is ``alias/replica/fr``."""
        path = "/".join(segment(part) for part in step.split("/"))
        filters = {"attempt": str(attempt) if attempt else None}
        return await self._log_page(f"/tasks/{segment(task_id)}/steps/{path}/log", cursor, wait_s, filters)

    async def instance_logs(
        self, name: str, *, cursor: str | None = None, wait_s: float = 0, **filters: str | None
    ) -> JsonDict:
        """``GET /stack_instances/{name}/logs``; filters task, service, functional_requirement, target."""
        return await self._log_page(f"/stack_instances/{segment(name)}/logs", cursor, wait_s, filters)

    async def _log_page(
        self, path: str, cursor: str | None, wait_s: float, filters: Mapping[str, str | None]
    ) -> JsonDict:
        params: dict[str, str | int] = {k: v for k, v in filters.items() if v}
        params["limit"] = PAGE_LIMIT
        if cursor:
            params["cursor"] = cursor
        if wait_s:
            params["wait"] = str(wait_s)
        return dict(await self._json("GET", path, params=params, wait_s=wait_s))

    async def evaluate_policy(self, body: JsonDict) -> JsonDict:
        """``POST /policies/evaluate``: ``{defined, result, package, template_revision, duration_ms}``."""
        return dict(await self._json("POST", "/policies/evaluate", body=body))

    # --- plumbing --------------------------------------------------------------------------------------
    @staticmethod
    def _doc_path(doc_type: str, name: str) -> str:
        return f"/documents/{segment(doc_type)}/{segment(name)}"

    async def _pages(
        self, path: str, params: dict[str, str | int], *, limit: int | None = None
    ) -> list[JsonDict]:
        items: list[JsonDict] = []
        paging = _Paging()
        while True:
            body = await self._json("GET", path, params=params)
            page = body if isinstance(body, list) else body.get("items", [])
            items.extend(dict(item) for item in page)
            cursor = None if isinstance(body, list) else paging.next(body)
            if cursor is None or (limit is not None and len(items) >= limit):
                return items[:limit] if limit is not None else items
            params = {**params, "cursor": cursor}

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        wait_s: float = 0,
    ) -> Any:
        response = await self._request(method, path, params=params, body=body, headers=headers, wait_s=wait_s)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise errors.StacklError(f"{method} {path}: the server answered with invalid JSON") from exc

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        wait_s: float = 0,
    ) -> httpx.Response:
        """Send one request; a long-poll (``wait_s``) gets that much longer than the request limit."""
        if self._http is None:
            raise RuntimeError("StacklClient is used outside 'async with'")
        content = json.dumps(body).encode() if body is not None else None
        all_headers = {
            **(headers or {}),
            **({"Content-Type": "application/json"} if content is not None else {}),
        }
        timeout = httpx.Timeout(self.timeout_s + wait_s) if wait_s else httpx.USE_CLIENT_DEFAULT
        request = self._http.build_request(
            method, path, params=params, content=content, headers=all_headers, timeout=timeout
        )
        self._trace_request(request)
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            self._say(f"! {type(exc).__name__}")
            raise errors.ServerUnreachable(
                f"no answer from the STACKL server at {redact_url(self.base_url)} "
                f"within {self.timeout_s:g} s ({method} {path})"
            ) from exc
        except httpx.TransportError as exc:
            self._say(f"! {type(exc).__name__}: {exc}")
            raise errors.ServerUnreachable(
                f"cannot reach the STACKL server at {redact_url(self.base_url)}: {exc or type(exc).__name__}"
            ) from exc
        self._record(response)
        if response.is_error:
            raise problems.from_response(
                response.status_code, response.content, response.headers.get("content-type", "")
            )
        return response

    def _record(self, response: httpx.Response) -> None:
        warnings = tuple(response.headers.get_list(WARNING_HEADER))
        revision = response.headers.get(REVISION_HEADER, "")
        self.last = ResponseMeta(
            status=response.status_code,
            warnings=warnings,
            task_id=response.headers.get(TASK_HEADER) or None,
            revision=int(revision) if revision.isdigit() else None,
        )
        self.warnings.extend(w for w in warnings if w not in self.warnings)
        self._say(f"< {response.status_code} {response.reason_phrase} ({len(response.content)} bytes)")
        for warning in warnings:
            self._say(f"< {WARNING_HEADER}: {warning}")

    def _trace_request(self, request: httpx.Request) -> None:
        if self._trace is None:
            return
        self._say(f"> {request.method} {redact_url(str(request.url))}")
        for name, value in request.headers.items():
            shown = f"Bearer {MASK}" if name.lower() == "authorization" else value
            self._say(f"> {name}: {shown}")

    def _say(self, line: str) -> None:
        if self._trace is not None:
            self._trace(line)
