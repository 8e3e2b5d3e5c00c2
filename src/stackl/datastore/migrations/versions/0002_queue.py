"""The broker's durable queue: worker tasks and agent jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2025-05-02 00:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "state IN ('queued', 'running')"


def _partial(where: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "queue_items",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("lease_expiries", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("unique_key", sa.String(255), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="ck_queue_items_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_queue_items"),
    )
    op.create_index(
        "ix_queue_items_ready",
        "queue_items",
        ["queue", "priority", "available_at"],
        **_partial("state = 'queued'"),
    )
    op.create_index("ix_queue_items_running", "queue_items", ["lease_until"], **_partial("state = 'running'"))
    op.create_index(
        "uq_queue_items_active_key",
        "queue_items",
        ["unique_key"],
        unique=True,
        **_partial(f"unique_key IS NOT NULL AND {ACTIVE}"),
    )
    op.create_index("ix_queue_items_unique_key", "queue_items", ["unique_key"])


def downgrade() -> None:
    op.drop_index("ix_queue_items_unique_key", table_name="queue_items")
    op.drop_index("uq_queue_items_active_key", table_name="queue_items")
    op.drop_index("ix_queue_items_running", table_name="queue_items")
    op.drop_index("ix_queue_items_ready", table_name="queue_items")
    op.drop_table("queue_items")
