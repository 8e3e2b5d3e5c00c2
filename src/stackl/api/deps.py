"""Dependencies shared by every route: the open ports, the settings, the caller, conditional headers, access.

Routes declare ``ports: PortsDep`` and get the object ``create_app`` was given; nothing is looked up globally.

``access`` is the one authentication and authorization check of the API: ``create_app`` puts it on every
router, so no route can forget it. It finds the operation (the route's name, which is its operationId), lets
the public ones through (health, version, about), authenticates the ``Authorization: Bearer`` token (401 when
missing or invalid), turns the operation into an action on a resource (``OPERATIONS``) and asks the
authorization policy (403 with the policy's ``reasons``). With auth off every request acts as ``local``, an
admin, and no policy is asked. What it found is left in ``request.state.access`` for the audit middleware,
and an audited change gets its audit entry written before its route runs (``api/auditing.py``).

A UI request may authenticate with the session cookie instead (``usecases/ui_sessions.py``). Agent isolation
does not depend on the policy: ``AgentScope`` and ``AgentBinding`` check the agent name of an agent token in
code, on the agent routes.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from stackl import errors
from stackl.api import auditing, bodies
from stackl.config import Settings
from stackl.domain import auth, revisions
from stackl.domain.auth import LOCAL, AccessRequest, Action, Resource, Subject
from stackl.usecases import authorization, ui_sessions
from stackl.usecases import documents as document_cases
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

LOCAL_SUBJECT = LOCAL.name
# The UI's session cookie (HttpOnly, SameSite=Strict, path /ui): an opaque session id, never the token.
COOKIE = "stackl_session"

# Operations anyone may call (spec/api.md: health, version, about; docs and openapi.json are not routes).
PUBLIC = frozenset({"healthz", "readyz", "get_version", "get_hostname"})
# Operations any authenticated caller may call, whatever the policy says.
AUTHENTICATED = frozenset({"whoami"})

# The OpenAPI document declares the scheme; the check itself is ``access`` (auto_error off: 401 is ours).
bearer_scheme = HTTPBearer(auto_error=False, description="API token: stackl_…", scheme_name="token")


def _ports(request: Request) -> Ports:
    ports: Ports = request.app.state.ports
    return ports


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _caller(request: Request) -> Subject:
    """Who is calling, as ``access`` found it (``local`` with auth off)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Subject) else LOCAL


def _subject(request: Request) -> str:
    """The calling subject's name. With auth off every request acts as ``local`` (api.md, roles)."""
    return _caller(request).name


PortsDep = Annotated[Ports, Depends(_ports)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SubjectDep = Annotated[str, Depends(_subject)]
CallerDep = Annotated[Subject, Depends(_caller)]


# --- agent isolation (agents.md §9) -----------------------------------------------------------------------
# Checked in code on the agent routes, after (and whatever) the replaceable authorization policy decided: a
# permissive user policy must not let one agent's token act for another agent, nor a user act as an agent.
def require_agent_scope(caller: Subject, agent: str) -> None:
    """An agent protocol call: an agent token acts only for its own agent name (admins and ``local`` for any).

    Raises:
        Forbidden: an agent token of another agent, or a role that may not act for agents.
    """
    if auth.Role.admin in caller.roles:
        return
    if auth.Role.agent in caller.roles and caller.agent == agent:
        return
    raise errors.Forbidden(
        f"{caller.name} may not act for agent {agent!r}",
        reasons=[
            f"an agent token for {caller.agent!r} may not act for agent {agent!r}"
            if caller.agent
            else "only an agent token bound to this agent (or an admin) may act for it"
        ],
    )


def require_agent_binding(caller: Subject, agent: str | None) -> None:
    """Any other agent route: an agent token sees and changes only its own agent (others: the policy decides).

    ``agent`` None is the list of every agent, which no agent token may read.

    Raises:
        Forbidden: an agent token asked about another agent (or all of them).
    """
    if auth.Role.agent not in caller.roles or auth.Role.admin in caller.roles:
        return
    if agent is None or caller.agent != agent:
        raise errors.Forbidden(
            f"{caller.name} may not see or change other agents",
            reasons=[f"an agent token for {caller.agent!r} acts for that agent only"],
        )


def checked_caller(request: Request) -> Subject:
    """The caller ``access`` authenticated; never the ``local`` fallback while auth is on.

    Raises:
        Unauthenticated: auth is on and no caller was authenticated for this request.
    """
    caller = getattr(request.state, "caller", None)
    if isinstance(caller, Subject) and caller.authenticated:
        return caller
    if not _settings(request).auth_enabled:
        return LOCAL
    raise errors.Unauthenticated("authentication required: send Authorization: Bearer <token>")


def agent_scope(request: Request, name: str) -> None:
    """``require_agent_scope`` for the agent named in the path (a dependency of the protocol routes)."""
    require_agent_scope(checked_caller(request), name)


def agent_binding(request: Request, name: str) -> None:
    """``require_agent_binding`` for the agent named in the path."""
    require_agent_binding(checked_caller(request), name)


CheckedCallerDep = Annotated[Subject, Depends(checked_caller)]
AgentScope = Depends(agent_scope)
AgentBinding = Depends(agent_binding)


# --- conditional headers ----------------------------------------------------------------------------------
def parse_revision_header(value: str | None, *, header: str) -> int | None:
    """The revision in an ``If-Match`` style header (``"7"``, ``W/"7"`` or ``7``); None when absent.

    Raises:
        Malformed: not a revision number.
    """
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not revisions.is_revision_number(text):  # "²".isdigit() is true, int("²") fails; 10**30 overflows
        raise errors.Malformed(
            f'{header} must be a revision number such as "3"',
            errors=[{"loc": ["header", header], "msg": "must be a revision number", "type": "malformed"}],
        )
    return int(text)


def if_match(request: Request) -> int | None:
    """The ``If-Match`` precondition of a write."""
    return parse_revision_header(request.headers.get("if-match"), header="If-Match")


def if_none_match_any(request: Request) -> bool:
    """``If-None-Match: *`` on a write: create only."""
    return request.headers.get("if-none-match", "").strip() == "*"


IfMatchDep = Annotated[int | None, Depends(if_match)]
IfAbsentDep = Annotated[bool, Depends(if_none_match_any)]


# --- what each operation does -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Op:
    """An operation as the policy sees it: the action, and where the resource type and name come from.

    ``type_param``/``name_param`` name a path parameter; ``type_field``/``name_field`` a body field; a
    ``doc_type`` fixes the type.
    """

    action: Action
    doc_type: str = ""
    type_param: str = ""
    name_param: str = ""
    type_field: str = ""
    name_field: str = ""
    instance: bool = False  # on a stack instance, the policy input carries its ``environments``
    plans: bool = False  # create/update: the environments of the request's placement count too


def _crud(doc_type: str, plural: str, name_param: str = "name") -> dict[str, Op]:
    """The 0.5 upsert group of one document type (A.3-A.7)."""
    return {
        f"get_{plural}": Op(Action.read, doc_type),
        f"get_{doc_type}_by_name": Op(Action.read, doc_type, name_param=name_param),
        f"post_{doc_type}": Op(Action.create, doc_type, name_field="name"),
        f"put_{doc_type}": Op(Action.update, doc_type, name_field="name"),
        f"delete_{doc_type}": Op(Action.delete, doc_type, name_param="name"),
    }


_IB = "infrastructure_base_type"
OPERATIONS: dict[str, Op] = {
    "get_infrastructure_base_by_type": Op(Action.read, type_param=_IB),
    "get_infrastructure_base_by_type_and_name": Op(
        Action.read, type_param=_IB, name_param="infrastructure_base_name"
    ),
    "post_infrastructure_base": Op(Action.create, type_field="type", name_field="name"),
    "put_infrastructure_base": Op(Action.update, type_field="type", name_field="name"),
    "delete_infrastructure_base": Op(Action.delete, type_param=_IB, name_param="infrastructure_base_name"),
    **_crud("functional_requirement", "functional_requirements"),
    **_crud("service", "services"),
    **_crud("stack_application_template", "stack_application_templates"),
    **_crud("stack_infrastructure_template", "stack_infrastructure_templates"),
    **_crud("policy_template", "policy_templates", name_param="policy_name"),
    # snapshots: create and restore need the write role of the snapshotted type (A.10)
    "create_snapshot": Op(Action.create, type_param="type_name", name_param="name", instance=True),
    "restore_latest_snapshot": Op(Action.restore, type_param="type_name", name_param="name", instance=True),
    "restore_snapshot": Op(Action.restore, "snapshot", name_param="name", instance=True),  # type: its source
    "get_snapshot": Op(Action.read, "snapshot", name_param="name"),
    "get_snapshots": Op(Action.read, "snapshot", name_param="name"),
    "delete_snapshot": Op(Action.delete, "snapshot", name_param="name"),
    # documents (B.1)
    "list_documents": Op(Action.read, "document"),
    "apply_documents": Op(Action.update, "document"),  # one decision per document of the body
    "list_documents_of_type": Op(Action.read, type_param="type"),
    "create_document": Op(Action.create, type_param="type", name_field="name"),
    "get_document": Op(Action.read, type_param="type", name_param="name"),
    "replace_document": Op(Action.update, type_param="type", name_param="name"),
    "patch_document": Op(Action.update, type_param="type", name_param="name"),
    "delete_document": Op(Action.delete, type_param="type", name_param="name"),
    "list_revisions": Op(Action.read, type_param="type", name_param="name"),
    "diff_revisions": Op(Action.read, type_param="type", name_param="name"),
    "restore_document": Op(Action.restore, type_param="type", name_param="name", instance=True),
    # stack instances (A.8, A.9, B.2)
    "get_stack_instances": Op(Action.read, "stack_instance"),
    "get_stack_instance": Op(Action.read, "stack_instance", name_param="name"),
    "post_stack_instance": Op(
        Action.create, "stack_instance", name_field="stack_instance_name", instance=True, plans=True
    ),
    "put_stack_instance": Op(
        Action.update, "stack_instance", name_field="stack_instance_name", instance=True, plans=True
    ),
    "delete_stack_instance": Op(Action.delete, "stack_instance", name_param="name", instance=True),
    "plan_stack_instance": Op(Action.plan, "stack_instance", name_field="stack_instance_name"),
    "add_outputs": Op(Action.update, "outputs", name_field="stack_instance", instance=True),
    "list_stack_instance_events": Op(Action.read, "stack_instance", name_param="name"),
    "get_stack_instance_logs": Op(Action.read, "stack_instance", name_param="name"),
    "list_drift": Op(Action.read, "stack_instance"),
    "get_stack_instance_drift": Op(Action.read, "stack_instance", name_param="name"),
    # tasks (B.3)
    "list_tasks": Op(Action.read, "task"),
    "get_task": Op(Action.read, "task", name_param="task_id"),
    "cancel_task": Op(Action.cancel, "task", name_param="task_id"),
    "stream_task_events": Op(Action.read, "task", name_param="task_id"),
    "get_task_logs": Op(Action.read, "task", name_param="task_id"),
    "get_step_log": Op(Action.read, "task", name_param="task_id"),
    # agents (B.4): the protocol calls act for the agent named in the path (or, to register, the body)
    "register_agent": Op(Action.register, "agent", name_field="name"),
    "agent_heartbeat": Op(Action.register, "agent", name_param="name"),
    "deregister_agent": Op(Action.register, "agent", name_param="name"),
    "claim_jobs": Op(Action.report, "agent", name_param="name"),
    "start_job": Op(Action.report, "agent", name_param="name"),
    "post_job_events": Op(Action.report, "agent", name_param="name"),
    "post_job_result": Op(Action.report, "agent", name_param="name"),
    "post_job_results": Op(Action.report, "agent", name_param="name"),
    "release_job": Op(Action.report, "agent", name_param="name"),
    "list_agents": Op(Action.read, "agent"),
    "get_agent": Op(Action.read, "agent", name_param="name"),
    "delete_agent": Op(Action.delete, "agent", name_param="name"),
    # policies (B.5), tokens (B.6), audit (B.7), metrics and events (B.9, B.10)
    "evaluate_policy": Op(Action.evaluate, "policy_template", name_field="template"),
    "test_policy": Op(Action.evaluate, "policy_template", name_field="template"),
    "create_token": Op(Action.create, "token", name_field="subject"),
    "list_tokens": Op(Action.read, "token"),
    "revoke_token": Op(Action.delete, "token", name_param="token_id"),
    "list_audit_events": Op(Action.read, "audit"),
    "metrics": Op(Action.read, "metrics"),
    "stream_events": Op(Action.read, "events"),
    # the web UI (its GETs are reads of what they show)
    "ui_document_restore": Op(Action.restore, type_param="doc_type", name_param="name"),
    "ui_plan_submit": Op(Action.plan, "stack_instance"),
    "ui_plan_deploy": Op(Action.create, "stack_instance", instance=True),
    "ui_task": Op(Action.read, "task", name_param="task_id"),
    "ui_task_live": Op(Action.read, "task", name_param="task_id"),
    "ui_task_cancel": Op(Action.cancel, "task", name_param="task_id"),
    "ui_instance_update": Op(Action.update, "stack_instance", name_param="name", instance=True),
    "ui_instance_retry": Op(Action.update, "stack_instance", name_param="name", instance=True),
    "ui_instance_rollback": Op(Action.restore, "stack_instance", name_param="name", instance=True),
    "ui_instance_delete": Op(Action.delete, "stack_instance", name_param="name", instance=True),
}


def operation_of(name: str, method: str) -> Op:
    """The known operation, else a read (GET, HEAD) or an admin-only action of its own name."""
    known = OPERATIONS.get(name)
    if known is not None:
        return known
    if method in ("GET", "HEAD"):
        return Op(Action.read, name or "unknown")
    return Op(Action.admin, name or "unknown")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


async def read_body(request: Request, settings: Settings) -> Any:
    """The parsed request body for the access check, or None (absent, too large, unparsable).

    The route reads the same cached bytes again and reports any problem itself (400, 413, 415).
    """
    declared = request.headers.get("content-length", "")
    if (
        not (declared.isascii() and declared.isdigit())
        or not 0 < int(declared) <= settings.server.max_body_bytes
    ):
        return None
    raw = await request.body()  # cached on the request: the route's own read gets the same bytes
    kind = bodies.media_type(request)
    try:
        if kind in bodies.YAML_TYPES:
            return await bodies.parse_yaml_body(request, raw, many=True)  # off the loop, parsed once
        return json.loads(raw)
    except (errors.StacklError, ValueError, yaml.YAMLError, RecursionError):
        return None


def _from_body(body: Any, field_name: str) -> str:
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return _text(body.get(field_name)) if isinstance(body, Mapping) and field_name else ""


async def resources_of(op: Op, request: Request, ports: Ports, body: Any) -> list[Resource]:
    """The resources an operation acts on (several for a bulk apply)."""
    params = request.path_params
    if op.doc_type == "document" and op.action is Action.update:  # POST /documents: every document
        items = body if isinstance(body, list) else [body] if isinstance(body, Mapping) else []
        found = [
            Resource(_text(d.get("type")), _text(d.get("name"))) for d in items if isinstance(d, Mapping)
        ]
        return found or [Resource("document")]
    doc_type = op.doc_type or _text(params.get(op.type_param)) or _from_body(body, op.type_field)
    name = _text(params.get(op.name_param)) if op.name_param else _from_body(body, op.name_field)
    if doc_type == "snapshot" and op.action is Action.restore and name:
        try:  # a snapshot restores as a write of the document it copied
            stored = await document_cases.get(ports, "snapshot", name)
        except errors.NotFound:
            return [Resource("snapshot", name)]
        source = stored.body.get("source")
        if isinstance(source, Mapping):
            return [Resource(_text(source.get("type")) or "snapshot", _text(source.get("name")))]
    return [Resource(doc_type, name)]


def presented_token(request: Request) -> str | None:
    """The token of a request: ``Authorization: Bearer`` or the ``/t/<token>/`` path prefix."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    path_token = request.scope.get("state", {}).get("path_token")
    if isinstance(path_token, str) and path_token:
        return path_token
    return None


def presented_session(request: Request) -> str | None:
    """The UI session id of a request: the cookie, on UI paths only (the API never takes it: no CSRF there)."""
    if request.url.path.startswith("/ui"):  # the cookie's path
        return request.cookies.get(COOKIE) or None
    return None


async def authenticate(request: Request) -> Subject:
    """The caller of a request, remembered on ``request.state.caller``.

    Raises:
        Unauthenticated: auth is on and no valid token came.
    """
    settings, ports = _settings(request), _ports(request)
    if not settings.auth_enabled:
        subject = LOCAL
    else:
        request.state.caller = auth.ANONYMOUS
        secret = presented_token(request)
        session = presented_session(request) if secret is None else None
        if session is not None:
            idle_s = settings.auth.ui_session_idle_s
            subject = await ui_sessions.authenticate(ports, session, idle_s=idle_s)
        elif secret is None:
            raise errors.Unauthenticated("authentication required: send Authorization: Bearer <token>")
        else:
            internal: Mapping[str, Subject] = getattr(request.app.state, "internal_subjects", {})
            subject = await token_cases.authenticate(ports, secret, extra=internal)
    request.state.caller = subject
    return subject


@dataclass(frozen=True, slots=True)
class Access:
    """What ``access`` found, for the audit middleware."""

    subject: Subject
    operation: str
    action: str
    resource: Resource
    detail: dict[str, Any] = field(default_factory=dict)


async def access(request: Request, _token: Annotated[Any, Depends(bearer_scheme)] = None) -> None:
    """Authenticate and authorize one API request (see the module docstring).

    Raises:
        Unauthenticated (401), Forbidden (403), PolicyEngineUnavailable (503).
    """
    route = request.scope.get("route")
    name = str(getattr(route, "name", "") or "")
    if name in PUBLIC:
        return
    await decide(request, name)


async def decide(request: Request, name: str, *, body: Any = None) -> None:
    """``access`` for a named operation; the UI calls it too."""
    settings, ports = _settings(request), _ports(request)
    op = operation_of(name, request.method)
    mutating = request.method in auth.MUTATING_METHODS
    needs_body = bool(op.type_field or op.name_field) or (
        op.doc_type == "document" and op.action is Action.update
    )
    # The anonymous entry of a refused request already names the action; the resource may follow.
    request.state.access = Access(auth.ANONYMOUS, name, op.action.value, Resource(op.doc_type))
    subject = await authenticate(request)
    if body is None and needs_body and (mutating or settings.auth_enabled):
        body = await read_body(request, settings)
    found = await resources_of(op, request, ports, body) if mutating or settings.auth_enabled else []
    first = found[0] if found else Resource(op.doc_type)
    request.state.access = Access(subject, name, op.action.value, first)
    if settings.auth_enabled and name not in AUTHENTICATED:
        await _authorize(request, op, subject, found, first, body)
    await auditing.write_ahead(request, request.state.access)  # no change without its audit entry


async def _authorize(
    request: Request, op: Op, subject: Subject, found: list[Resource], first: Resource, body: Any
) -> None:
    """Ask the authorization policy about every resource of the request (403 on a refusal)."""
    ports = _ports(request)
    policy, custom = await authorization.current_policy(ports)
    environments: tuple[str, ...] = ()
    if custom and op.instance and first.type == "stack_instance":
        environments = await authorization.instance_environments(
            ports, first.name, body if op.plans else None
        )
    requests = [
        AccessRequest(
            subject=subject,
            method=request.method,
            path=request.url.path,
            action=op.action,
            resource=resource,
            environments=environments,
        )
        for resource in found
    ]
    await authorization.authorize(ports, requests, policy=policy)
