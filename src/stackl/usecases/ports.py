"""The ports every use case receives: one object, built by bootstrap or by a test.

Use cases never open adapters themselves; they get the already-open ports here, so the same code runs on the
in-memory fakes in unit tests and on SQLite or PostgreSQL in production.
"""

from dataclasses import dataclass, field

from stackl.datastore.base import DocumentStore
from stackl.domain.clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class Ports:
    """Open adapters: the document store and the clock (broker, policy engine and secret box come later)."""

    store: DocumentStore
    clock: Clock = field(default_factory=SystemClock)
    write_retries: int = 5
