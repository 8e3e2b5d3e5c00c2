"""Event-driven tasks: a queue item names the parent it wakes when it ends, and counts its wake-ups.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases (no table copy): a nullable column and one with a default.
    op.add_column("queue_items", sa.Column("parent_id", sa.String(64), nullable=True))
    op.add_column("queue_items", sa.Column("wakeups", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("queue_items") as batch:
        batch.drop_column("wakeups")
        batch.drop_column("parent_id")
