"""The TokenStore port: API tokens by id and by the SHA-256 of their secret, their UI sessions, and the fake.

A token's secret is never stored: ``hash`` is ``domain.auth.token_hash(secret)``, so a database dump gives no
usable token. Revocation keeps the row (``revoked_at``) so lists and the audit log can still name it.

A web UI session is a credential derived from a token (the UI's cookie carries its opaque id, never the
token), so it lives beside the tokens: stored by the SHA-256 of its id, bound to the token it was opened with,
revoked with it. Expired and revoked sessions are pruned, so the table does not grow with every sign-in.
"""

import abc
import builtins
from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One API token as stored (spec/api.md §B.6)."""

    id: str
    hash: str
    subject: str
    role: str
    agent: str | None
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One web UI session as stored: the hash of its id, the token it acts as, and its times."""

    hash: str
    token_id: str
    subject: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # absolute: the session ends then, however active
    revoked_at: datetime | None = None

    def usable(self, now: datetime, *, idle_s: float) -> bool:
        """Neither revoked, nor past its absolute expiry, nor idle for ``idle_s`` seconds or more at ``now``."""
        return (
            self.revoked_at is None
            and now < self.expires_at
            and (now - self.last_seen_at).total_seconds() < idle_s
        )


class TokenStore(abc.ABC):
    """Stores API tokens; every method is atomic on its own."""

    @abc.abstractmethod
    async def add(self, record: TokenRecord) -> None:
        """Store a new token."""

    @abc.abstractmethod
    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        """The token whose secret has this hash (revoked and expired ones included)."""

    @abc.abstractmethod
    async def get(self, token_id: str) -> TokenRecord | None:
        """One token by id."""

    @abc.abstractmethod
    async def list(self, *, include_revoked: bool = False) -> builtins.list[TokenRecord]:
        """All tokens, oldest first."""

    @abc.abstractmethod
    async def revoke(self, token_id: str, *, at: datetime) -> bool:
        """Mark a token revoked; False when there is no such (unrevoked) token."""

    @abc.abstractmethod
    async def touch(self, token_id: str, *, at: datetime) -> None:
        """Record a use of the token."""

    @abc.abstractmethod
    async def add_session(self, record: SessionRecord) -> None:
        """Store a new UI session."""

    @abc.abstractmethod
    async def session(self, session_hash: str) -> SessionRecord | None:
        """The session whose id has this hash (revoked and expired ones included)."""

    @abc.abstractmethod
    async def touch_session(self, session_hash: str, *, at: datetime) -> None:
        """Record activity on a session (its idle expiry counts from ``at``)."""

    @abc.abstractmethod
    async def revoke_session(self, session_hash: str, *, at: datetime) -> bool:
        """Revoke one session; False when there is no such unrevoked session."""

    @abc.abstractmethod
    async def revoke_sessions(self, token_id: str, *, at: datetime) -> int:
        """Revoke every unrevoked session of a token; how many."""

    @abc.abstractmethod
    async def prune_sessions(self, *, before: datetime) -> int:
        """Delete sessions that expired, or were revoked, before ``before``; how many."""


class InMemoryTokenStore(TokenStore):
    """The TokenStore fake for unit tests and the in-memory app."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}

    async def add(self, record: TokenRecord) -> None:
        if record.id in self._tokens or any(t.hash == record.hash for t in self._tokens.values()):
            raise ValueError("duplicate token")
        self._tokens[record.id] = record

    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        return next((t for t in self._tokens.values() if t.hash == token_hash), None)

    async def get(self, token_id: str) -> TokenRecord | None:
        return self._tokens.get(token_id)

    async def list(self, *, include_revoked: bool = False) -> builtins.list[TokenRecord]:
        found = [t for t in self._tokens.values() if include_revoked or t.revoked_at is None]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    async def revoke(self, token_id: str, *, at: datetime) -> bool:
        record = self._tokens.get(token_id)
        if record is None or record.revoked_at is not None:
            return False
        self._tokens[token_id] = replace(record, revoked_at=at)
        return True

    async def touch(self, token_id: str, *, at: datetime) -> None:
        if (record := self._tokens.get(token_id)) is not None:
            self._tokens[token_id] = replace(record, last_used_at=at)

    async def add_session(self, record: SessionRecord) -> None:
        if record.hash in self._sessions:
            raise ValueError("duplicate session")
        self._sessions[record.hash] = record

    async def session(self, session_hash: str) -> SessionRecord | None:
        return self._sessions.get(session_hash)

    async def touch_session(self, session_hash: str, *, at: datetime) -> None:
        if (record := self._sessions.get(session_hash)) is not None:
            self._sessions[session_hash] = replace(record, last_seen_at=at)

    async def revoke_session(self, session_hash: str, *, at: datetime) -> bool:
        record = self._sessions.get(session_hash)
        if record is None or record.revoked_at is not None:
            return False
        self._sessions[session_hash] = replace(record, revoked_at=at)
        return True

    async def revoke_sessions(self, token_id: str, *, at: datetime) -> int:
        found = [r for r in self._sessions.values() if r.token_id == token_id and r.revoked_at is None]
        for record in found:
            self._sessions[record.hash] = replace(record, revoked_at=at)
        return len(found)

    async def prune_sessions(self, *, before: datetime) -> int:
        gone = [
            r.hash
            for r in self._sessions.values()
            if r.expires_at < before or (r.revoked_at is not None and r.revoked_at < before)
        ]
        for key in gone:
            del self._sessions[key]
        return len(gone)
