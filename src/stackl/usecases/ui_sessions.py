"""Web UI sessions: what the browser's cookie carries instead of the API token (issue 15, defect 11).

Signing in with a token opens a session: a fresh opaque id (256 random bits) goes into the cookie, and only its
SHA-256 is stored, bound to the token's id and subject. A session ends at the first of: ``idle_s`` without a
request, ``max_s`` after sign-in, the token's own expiry, sign-out, or the revocation of the token (which also
revokes its sessions; a session whose token is no longer usable is refused even before that). So a cookie
copied from a browser is worth nothing once its owner signs out, and never outlives the session's limits.

The id has its own prefix, so it can never pass for an API token (``stackl_…``) where a token is expected.
"""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from stackl import errors
from stackl.datastore.tokens import SessionRecord
from stackl.domain import auth
from stackl.domain.auth import Subject
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

SESSION_PREFIX = "stackl-ui_"  # never a token: tokens start with ``stackl_``
SESSION_CHARS = 43  # secrets.token_urlsafe(32): 256 bits
TOUCH_EVERY = timedelta(seconds=60)  # the idle clock is kept to the minute, not written on every page
PRUNE_AFTER = timedelta(days=1)  # ended sessions are deleted a day later (at the next sign-in)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    """A new session: its id (for the cookie only; never stored), the signed-in subject and its end."""

    session_id: str
    subject: Subject
    expires_at: datetime


def session_hash(session_id: str) -> str:
    """The stored form of a session id (hex SHA-256; 256 random bits need no salt)."""
    return auth.token_hash(session_id)


def looks_like_session(value: str) -> bool:
    """Whether a cookie value has the shape of a session id (cheap check before any lookup)."""
    rest = value[len(SESSION_PREFIX) :]
    return (
        value.startswith(SESSION_PREFIX)
        and len(rest) == SESSION_CHARS
        and all(c.isalnum() or c in "-_" for c in rest)
    )


async def open_session(
    ports: Ports,
    secret: str,
    *,
    idle_s: float,
    max_s: float,
    extra: Mapping[str, Subject] | None = None,
) -> Opened:
    """Sign in with an API token: check it and open a session bound to it.

    Raises:
        Unauthenticated: the token is unknown, revoked or expired, or is an in-process credential (those
            have no stored token a session could be bound to).
    """
    subject = await token_cases.authenticate(ports, secret, extra=extra)
    if subject.token_id is None:
        raise errors.Unauthenticated("invalid or expired token")
    now = ports.clock.now()
    expires_at = now + timedelta(seconds=max_s)
    if subject.expires_at is not None:
        expires_at = min(expires_at, subject.expires_at)
    session_id = SESSION_PREFIX + secrets.token_urlsafe(32)
    await ports.tokens.prune_sessions(before=now - PRUNE_AFTER)
    await ports.tokens.add_session(
        SessionRecord(
            hash=session_hash(session_id),
            token_id=subject.token_id,
            subject=subject.name,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )
    log.info("ui_session_opened", subject=subject.name, token_id=subject.token_id, idle_s=idle_s)
    return Opened(session_id=session_id, subject=subject, expires_at=expires_at)


async def authenticate(ports: Ports, session_id: str, *, idle_s: float) -> Subject:
    """The subject of a session cookie; refreshes the session's idle clock (at most once a minute).

    Raises:
        Unauthenticated: unknown, ended (idle, absolute expiry, signed out) or its token no longer usable.
    """
    refused = errors.Unauthenticated("the session has ended: sign in again")
    if not looks_like_session(session_id):
        raise refused
    digest = session_hash(session_id)
    record = await ports.tokens.session(digest)
    now = ports.clock.now()
    if record is None or not auth.same_secret(record.hash, digest) or not record.usable(now, idle_s=idle_s):
        raise refused
    token = await ports.tokens.get(record.token_id)
    if token is None or not token.usable(now):
        raise refused
    if now - record.last_seen_at >= TOUCH_EVERY:
        await ports.tokens.touch_session(digest, at=now)
    return token_cases.subject_of(token)


async def close_session(ports: Ports, session_id: str) -> None:
    """Sign out: the session is revoked at once (an unknown or ended one is not an error)."""
    if looks_like_session(session_id) and await ports.tokens.revoke_session(
        session_hash(session_id), at=ports.clock.now()
    ):
        log.info("ui_session_closed")
