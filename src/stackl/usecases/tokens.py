"""API tokens: create (shown once), list, revoke, and authenticate a request's token (spec/api.md §B.6).

The secret is ``stackl_`` + 43 URL-safe characters (256 random bits); only its SHA-256 is stored, so a
lookup is one indexed query on the hash. ``last_used_at`` is written at most once a minute per token, so
authentication costs no write on most requests.
"""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stackl import errors
from stackl.datastore.tokens import TokenRecord
from stackl.domain import auth
from stackl.domain.auth import Role, Subject
from stackl.domain.names import NameKind, check_name
from stackl.usecases.ports import Ports

TOUCH_EVERY = timedelta(seconds=60)
MAX_EXPIRES_IN_S = 10 * 365 * 24 * 3600
MAX_DESCRIPTION = 1000


@dataclass(frozen=True, slots=True)
class Created:
    """A new token: its record and its secret, which is never available again."""

    record: TokenRecord
    secret: str


def new_secret() -> str:
    """A fresh token secret."""
    return auth.TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    """A fresh token id (not secret: shown in lists, the audit log and task sources)."""
    return auth.TOKEN_ID_PREFIX + secrets.token_hex(6)


def _invalid(field: str, msg: str) -> errors.InvalidDocument:
    return errors.InvalidDocument(
        f"{field}: {msg}", errors=[{"loc": ["body", field], "msg": msg, "type": "value_error"}]
    )


def _text(body: Mapping[str, Any], field: str, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise _invalid(field, "field required")
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    return value


async def create(ports: Ports, body: object, *, created_by: str) -> Created:
    """``POST /auth/tokens``: ``{subject, role, agent?, description?, expires_in_s?}``.

    Raises:
        InvalidDocument: a field is missing or invalid (named in ``errors``).
    """
    if not isinstance(body, Mapping):
        raise errors.InvalidDocument("the body must be an object")
    unknown = sorted(set(body) - {"subject", "role", "agent", "description", "expires_in_s"})
    if unknown:
        raise errors.InvalidDocument(
            f"unknown field {', '.join(unknown)}",
            errors=[{"loc": ["body", k], "msg": "unknown field", "type": "extra_forbidden"} for k in unknown],
        )
    subject = _text(body, "subject", required=True) or ""
    if len(subject) > 255 or not subject.isprintable():
        raise _invalid("subject", "must be at most 255 printable characters")
    role_text = _text(body, "role", required=True) or ""
    try:
        role = Role(role_text)
    except ValueError:
        raise _invalid("role", "must be admin, operator, viewer or agent") from None
    agent = _text(body, "agent")
    if role is Role.agent:
        if agent is None:
            raise _invalid("agent", "an agent token needs the agent name it acts for")
        problem = check_name(NameKind.DOCUMENT, agent)
        if problem:
            raise _invalid("agent", problem)
    elif agent is not None:
        raise _invalid("agent", "only agent tokens are bound to an agent")
    description = _text(body, "description") or ""
    if len(description) > MAX_DESCRIPTION:
        raise _invalid("description", f"at most {MAX_DESCRIPTION} characters")
    expires_in = body.get("expires_in_s")
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not 0 < expires_in <= MAX_EXPIRES_IN_S
    ):
        raise _invalid("expires_in_s", f"must be a number of seconds between 1 and {MAX_EXPIRES_IN_S}")
    return await issue(
        ports,
        subject=subject,
        role=role,
        agent=agent,
        description=description,
        expires_in_s=float(expires_in) if expires_in is not None else None,
        created_by=created_by,
    )


async def issue(
    ports: Ports,
    *,
    subject: str,
    role: Role,
    agent: str | None = None,
    description: str = "",
    expires_in_s: float | None = None,
    created_by: str,
) -> Created:
    """Store a new token (already validated) and return it with its secret."""
    now = ports.clock.now()
    secret = new_secret()
    record = TokenRecord(
        id=new_id(),
        hash=auth.token_hash(secret),
        subject=subject,
        role=role.value,
        agent=agent,
        description=description,
        created_at=now,
        created_by=created_by,
        expires_at=now + timedelta(seconds=expires_in_s) if expires_in_s is not None else None,
    )
    await ports.tokens.add(record)
    return Created(record=record, secret=secret)


async def list_tokens(ports: Ports, *, include_revoked: bool = False) -> list[TokenRecord]:
    """Every token, without secrets (there are none to give)."""
    return await ports.tokens.list(include_revoked=include_revoked)


async def revoke(ports: Ports, token_id: str) -> None:
    """``DELETE /auth/tokens/{id}``.

    Raises:
        NotFound: no such token, or it is already revoked.
    """
    now = ports.clock.now()
    if not await ports.tokens.revoke(token_id, at=now):
        raise errors.NotFound(f"no token {token_id!r}")
    await ports.tokens.revoke_sessions(token_id, at=now)  # its web UI sessions end with it


async def has_usable(ports: Ports, role: Role) -> bool:
    """Whether a usable (unrevoked, unexpired) token of ``role`` exists (the server's first start)."""
    now = ports.clock.now()
    return any(t.role == role.value and t.usable(now) for t in await ports.tokens.list())


def subject_of(record: TokenRecord) -> Subject:
    """The subject a token authenticates."""
    return Subject(
        name=record.subject,
        roles=(Role(record.role),),
        token_id=record.id,
        agent=record.agent,
        expires_at=record.expires_at,
    )


async def authenticate(ports: Ports, secret: str, *, extra: Mapping[str, Subject] | None = None) -> Subject:
    """The subject of a presented token.

    Args:
        ports: the open ports.
        secret: the token as sent.
        extra: in-process credentials by token hash (the embedded agent's), checked before the store.

    Raises:
        Unauthenticated: unknown, revoked or expired token (one message for all: no oracle).
    """
    refused = errors.Unauthenticated("invalid or expired token")
    if not auth.looks_like_token(secret):
        raise refused
    digest = auth.token_hash(secret)
    if extra and digest in extra:
        return extra[digest]
    record = await ports.tokens.by_hash(digest)
    now = ports.clock.now()
    if record is None or not auth.same_secret(record.hash, digest) or not record.usable(now):
        raise refused
    if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
        await ports.tokens.touch(record.id, at=now)
    return subject_of(record)


def token_view(record: TokenRecord, *, now: datetime | None = None) -> dict[str, Any]:
    """A token as lists show it: never a secret, never the hash."""
    view: dict[str, Any] = {
        "id": record.id,
        "subject": record.subject,
        "role": record.role,
        "agent": record.agent,
        "description": record.description,
        "created_at": _iso(record.created_at),
        "created_by": record.created_by,
        "expires_at": _iso(record.expires_at),
        "last_used_at": _iso(record.last_used_at),
        "revoked_at": _iso(record.revoked_at),
    }
    if now is not None:
        view["expired"] = record.expires_at is not None and record.expires_at <= now
    return view


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None
