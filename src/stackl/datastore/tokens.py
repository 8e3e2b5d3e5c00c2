"""The TokenStore port: API tokens by id and by the SHA-256 of their secret, and the in-memory fake.

A token's secret is never stored: ``hash`` is ``domain.auth.token_hash(secret)``, so a database dump gives no
usable token. Revocation keeps the row (``revoked_at``) so lists and the audit log can still name it.
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


class InMemoryTokenStore(TokenStore):
    """The TokenStore fake for unit tests and the in-memory app."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}

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
