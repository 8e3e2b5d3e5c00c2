"""Step progress stored apart from revisions: one row per (document, step), applied by reads (issue 15, 7).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY AUTOINCREMENT on SQLite


def upgrade() -> None:
    op.create_table(
        "step_progress",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("type", KEY, nullable=False),
        sa.Column("name", KEY, nullable=False),
        sa.Column("key", TEXT, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["type", "name"],
            ["documents.type", "documents.name"],
            name="fk_step_progress_type_name_documents",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_step_progress"),
        sa.UniqueConstraint("type", "name", "key", name="uq_step_progress_type_name_key"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("step_progress")
