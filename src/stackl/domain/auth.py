"""Subject, Role, Action: who calls, what they ask for, and the input of the authorization policy.

An API token (``stackl_`` + 43 URL-safe characters, 256 random bits) authenticates a *subject* with one role;
only the token's SHA-256 is stored. Authorization is a Rego decision (spec/api.md §B.8) over the input that
``policy_input`` builds from an ``AccessRequest``: the subject, its roles, the HTTP method and path, the
action and the resource (plus, for instance operations, the environments it touches).

Roles: ``admin`` ⊃ ``operator`` ⊃ ``viewer``; ``agent`` is separate and bound to one agent name. With auth
off every request acts as ``LOCAL`` (subject ``local``, role admin).
"""

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

TOKEN_PREFIX = "stackl_"  # noqa: S105 - the visible prefix of every token, not a secret
TOKEN_CHARS = 43  # secrets.token_urlsafe(32): 256 bits
TOKEN_ID_PREFIX = "tok_"  # noqa: S105 - token ids are not secret


class Role(StrEnum):
    """The roles of spec/api.md (A ⊃ O ⊃ V; G separate)."""

    admin = "admin"
    operator = "operator"
    viewer = "viewer"
    agent = "agent"


class Action(StrEnum):
    """What a request does, as the authorization policy sees it (spec/api.md §B.8)."""

    read = "read"
    create = "create"
    update = "update"
    delete = "delete"
    restore = "restore"
    plan = "plan"
    evaluate = "evaluate"
    cancel = "cancel"
    register = "register"
    report = "report"
    admin = "admin"


MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Subject:
    """The authenticated caller: a token's subject and role, or ``local`` when auth is off."""

    name: str
    roles: tuple[Role, ...]
    token_id: str | None = None
    agent: str | None = None  # an agent token's agent name
    expires_at: datetime | None = None
    authenticated: bool = True

    @property
    def role(self) -> str:
        """The first role (tokens carry exactly one)."""
        return self.roles[0].value if self.roles else ""


LOCAL = Subject(name="local", roles=(Role.admin,))
ANONYMOUS = Subject(name="anonymous", roles=(), authenticated=False)


@dataclass(frozen=True, slots=True)
class Resource:
    """The thing a request acts on: a document type (or ``task``, ``agent``, ``token``, ``audit``…) and name."""

    type: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One authorization question: may ``subject`` do ``action`` on ``resource`` through ``method path``?"""

    subject: Subject
    method: str
    path: str
    action: Action
    resource: Resource
    environments: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def policy_input(request: AccessRequest) -> dict[str, Any]:
    """The input document of the authorization policy (spec/api.md §B.8)."""
    return {
        "subject": request.subject.name,
        "roles": [r.value for r in request.subject.roles],
        "token_id": request.subject.token_id,
        "agent": request.subject.agent,
        "method": request.method,
        "path": request.path,
        "action": request.action.value,
        "resource": {"type": request.resource.type, "name": request.resource.name},
        "environments": list(request.environments),
        **request.extra,
    }


def token_hash(secret: str) -> str:
    """The stored form of a token: hex SHA-256 of its text (the token has 256 random bits; no salt needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(secret: str) -> bool:
    """Whether a string has the shape of a STACKL token (cheap check before any lookup)."""
    return (
        secret.startswith(TOKEN_PREFIX)
        and 16 <= len(secret) <= 256
        and all(c.isalnum() or c in "-_" for c in secret[len(TOKEN_PREFIX) :])
    )


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())


def environment_of(target: str) -> str:
    """The environment of an infrastructure target ``environment.location.zone``."""
    return target.split(".", 1)[0]
