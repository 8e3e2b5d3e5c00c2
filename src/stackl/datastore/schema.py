"""The one SQLAlchemy ``MetaData`` of STACKL's database, shared by the datastore, the broker and Alembic.

Alembic revisions under ``migrations/versions`` create exactly these tables, and the migration tests compare
the migrated database with this metadata, so a table changed here without a migration fails the build.

Tables:

- ``documents``: the current state of each key (type, name). A delete keeps the row as a tombstone
  (``deleted``) so that its revision counter survives and a re-created document continues the numbering;
  every write is conditional on ``revision``. Rows are never removed, so the foreign keys of the other two
  tables need no cascade.
- ``revisions``: the history, one row per revision, appended by every write; a delete's row has no body.
- ``step_progress``: the live step progress of each document (``domain/step_progress.py``): one row per
  (document, step key), replaced on each change (a new ``seq``), applied by reads on top of the current
  revision; the next revision of the document holds them and deletes them, and so does a delete.
- ``doc_references``: the references of each current document, replaced on each write and removed on
  delete, indexed by target so "who refers to me" is an index lookup rather than a scan of bodies.
- ``queue_items``: the broker's durable queue (worker tasks and agent jobs alike), one row per item with
  its lease, attempt, fencing epoch and outcome; partial indexes serve the claim (queued items), the lease
  expiry (running items) and "one active item per ``unique_key``".
- ``agents``, ``agent_instances``: the agents that registered and each process (instance) of them, with
  ``last_seen`` for liveness (spec/agents.md §1.2-1.3, ``datastore/agents.py``).
- ``job_attempts``: one row per dispatch of an agent job (``queue_items`` row, attempt number): who claimed
  it, when it started, its log size and its result (the first one wins).
- ``counters``: the next value of each host-name counter (lifecycle.md §4.7).
- ``job_logs``: the masked log lines of each attempt, keyed by ``seq`` so resent batches store nothing twice.
- ``api_tokens``: API tokens by id, with the SHA-256 of the secret (never the secret), role, bound agent,
  expiry, last use and revocation (spec/api.md §B.6).
- ``audit_log``: one row per mutating request and agent claim (spec/api.md §B.7); request bodies never.
- ``ui_sessions``: web UI sign-ins by the SHA-256 of their opaque id (never the id), bound to the API token
  they were opened with, with idle and absolute expiry and revocation.

Bodies are JSON *text*: ``JSON`` is PostgreSQL's ``json`` type (not ``jsonb``), which keeps the submitted
text and so its key order (spec/documents.md §2.3), and text on SQLite; the engine serialises with
``rules.dumps`` (see ``dialects.create_engine``). Times are aware UTC datetimes in both directions
(``UtcDateTime``), though SQLite stores them without a zone.
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from stackl.datastore import dialects

NAME_LENGTH = 255  # types, names and subjects; spec/documents.md §2.2 allows 128-character names
ID_LENGTH = 64  # task ids (26-character ULIDs, room for other id schemes)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database, including SQLite, which stores no zone.

    Writes refuse naive datetimes (every STACKL time comes aware from the Clock) and store UTC; reads
    always return aware UTC, whatever the driver gives back.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: STACKL stores aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))  # text drivers
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _key() -> sa.types.TypeEngine[str]:
    # Keys sort bytewise on both databases (listings, cursors and referrers follow that order).
    return dialects.bytewise_text(NAME_LENGTH)


def _body(*, nullable: bool) -> sa.JSON:
    # none_as_null: a tombstone's missing body is SQL NULL, not the JSON text "null".
    return sa.JSON(none_as_null=nullable)


documents = sa.Table(
    "documents",
    metadata,
    sa.Column("type", _key(), primary_key=True),
    sa.Column("name", _key(), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("body", _body(nullable=False), nullable=False),  # ``{}`` while a tombstone
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("updated_by", sa.String(NAME_LENGTH), nullable=False),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("type", _key(), primary_key=True),
    sa.Column("name", _key(), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("subject", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("task_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("restored_from", sa.Integer, nullable=True),
    sa.Column("body", _body(nullable=True), nullable=True),  # NULL for a delete
    sa.ForeignKeyConstraint(["type", "name"], ["documents.type", "documents.name"]),
)

doc_references = sa.Table(
    "doc_references",
    metadata,
    sa.Column("from_type", _key(), primary_key=True),
    sa.Column("from_name", _key(), primary_key=True),
    sa.Column("path", dialects.bytewise_text(), primary_key=True),
    sa.Column("to_type", _key(), primary_key=True),
    sa.Column("to_name", _key(), primary_key=True),
    # The referring document must exist; the referred one need not (dangling references are allowed).
    sa.ForeignKeyConstraint(["from_type", "from_name"], ["documents.type", "documents.name"]),
    sa.Index("ix_doc_references_to", "to_type", "to_name"),
)

# Step progress (domain/step_progress.py): a row is replaced (delete + insert) on each change, so ``seq`` only
# grows; AUTOINCREMENT on SQLite so that a seq is never reused after the rows with the highest ones went.
step_progress = sa.Table(
    "step_progress",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("type", _key(), nullable=False),
    sa.Column("name", _key(), nullable=False),
    sa.Column("key", dialects.bytewise_text(), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # the document revision the row was written against
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("entry", _body(nullable=False), nullable=False),
    sa.UniqueConstraint("type", "name", "key"),  # also the index of "the rows of one document"
    sa.ForeignKeyConstraint(["type", "name"], ["documents.type", "documents.name"]),
    sqlite_autoincrement=True,
)

# Persistent host-name counters ``{counter(NAME, START)}`` (lifecycle.md §4.7): global, only ever growing.
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("next_value", sa.BigInteger, nullable=False),
)

# --- the broker's queue (broker/base.py) ---------------------------------------------------------------------
QUEUE_LENGTH = 255  # queue names: "tasks", "agent:<agent name>"
ITEM_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_ITEM_STATES = ("queued", "running")
_ACTIVE = "state IN ('queued', 'running')"  # literal SQL: the partial indexes must read the same on both

queue_items = sa.Table(
    "queue_items",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),  # ULID: sorts by creation time
    sa.Column("queue", sa.String(QUEUE_LENGTH), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", _body(nullable=False), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("available_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("lease_owner", sa.String(NAME_LENGTH), nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("lease_epoch", sa.Integer, nullable=False),
    sa.Column("lease_expiries", sa.Integer, nullable=False),
    sa.Column("timeout_s", sa.Float, nullable=True),
    sa.Column("deadline", UtcDateTime, nullable=True),
    sa.Column("cancel_requested", _body(nullable=True), nullable=True),
    sa.Column("result", _body(nullable=True), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("unique_key", sa.String(NAME_LENGTH), nullable=True),
    # Event-driven tasks (broker/base.py): the item woken when this one ends, and how often it was woken.
    sa.Column("parent_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("wakeups", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint(f"state IN {ITEM_STATES!r}", name="state"),
    # Claim: the ready items of a queue, by priority then age (the partial index holds queued items only).
    sa.Index(
        "ix_queue_items_ready",
        "queue",
        "priority",
        "available_at",
        sqlite_where=sa.text("state = 'queued'"),
        postgresql_where=sa.text("state = 'queued'"),
    ),
    # Lease expiry: running items by lease end.
    sa.Index(
        "ix_queue_items_running",
        "lease_until",
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    ),
    # One active item per key (e.g. one task per stack instance); history lookups use the plain index.
    sa.Index(
        "uq_queue_items_active_key",
        "unique_key",
        unique=True,
        sqlite_where=sa.text(f"unique_key IS NOT NULL AND {_ACTIVE}"),
        postgresql_where=sa.text(f"unique_key IS NOT NULL AND {_ACTIVE}"),
    ),
    sa.Index("ix_queue_items_unique_key", "unique_key"),
)


# --- agents, job attempts and logs (datastore/agents.py) ---------------------------------------------------
agents = sa.Table(
    "agents",
    metadata,
    sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

agent_instances = sa.Table(
    "agent_instances",
    metadata,
    sa.Column("instance_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("hostname", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("protocol", sa.Integer, nullable=False),
    sa.Column("executors", _body(nullable=False), nullable=False),
    sa.Column("tools", _body(nullable=False), nullable=False),
    sa.Column("labels", _body(nullable=False), nullable=False),
    sa.Column("max_jobs", sa.Integer, nullable=False),
    sa.Column("free_slots", sa.Integer, nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("deregistered_at", UtcDateTime, nullable=True),
    sa.ForeignKeyConstraint(["name"], ["agents.name"], ondelete="CASCADE"),
    sa.Index("ix_agent_instances_name", "name"),
)

job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("job_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("agent", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("instance_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("claimed_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("log_bytes", sa.Integer, nullable=False),
    sa.Column("log_truncated", sa.Boolean, nullable=False),
    sa.Column("stored_seq", sa.Integer, nullable=False),
    sa.Column("result", _body(nullable=True), nullable=True),
    sa.Column("result_at", UtcDateTime, nullable=True),
)

job_logs = sa.Table(
    "job_logs",
    metadata,
    sa.Column("job_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("stream", sa.String(16), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
)


# --- API tokens and the audit log (datastore/tokens.py, datastore/audit.py) ---------------------------------
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),  # tok_…: shown in lists, audit and whoami
    sa.Column(
        "hash", sa.String(64), nullable=False, unique=True
    ),  # hex SHA-256 of the token; never the token
    sa.Column("subject", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("agent", sa.String(NAME_LENGTH), nullable=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("last_used_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),  # ULID: sorts by time
    sa.Column("time", UtcDateTime, nullable=False),
    sa.Column("subject", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("resource_type", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("resource_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("revision", sa.Integer, nullable=True),
    sa.Column("task_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("remote_addr", sa.String(64), nullable=False),
    sa.Column("user_agent", sa.Text, nullable=False),
    sa.Column("detail", _body(nullable=True), nullable=True),  # e.g. the job ids of a claim; never a body
    sa.Index("ix_audit_log_time", "time"),
    sa.Index("ix_audit_log_subject", "subject", "time"),
)

# --- web UI sessions (datastore/tokens.py) ----------------------------------------------------------------
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column(
        "hash", sa.String(64), primary_key=True
    ),  # hex SHA-256 of the cookie's session id; never the id
    sa.Column("token_id", sa.String(ID_LENGTH), nullable=False),  # the API token the session acts as
    sa.Column("subject", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),  # idle expiry counts from here
    sa.Column("expires_at", UtcDateTime, nullable=False),  # absolute expiry
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Index("ix_ui_sessions_token_id", "token_id"),
    sa.Index("ix_ui_sessions_expires_at", "expires_at"),
)
