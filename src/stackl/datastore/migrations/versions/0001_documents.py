"""Documents, their revision history and their references.

Revision ID: 0001
Revises:
Create Date: 2025-05-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keys sort bytewise on PostgreSQL too (COLLATE "C"), whatever the server's locale: listings and cursors
# follow Python's order of str on both databases.
KEY = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("type", KEY, nullable=False),
        sa.Column("name", KEY, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("type", "name", name="pk_documents"),
    )
    op.create_table(
        "revisions",
        sa.Column("type", KEY, nullable=False),
        sa.Column("name", KEY, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(none_as_null=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["type", "name"],
            ["documents.type", "documents.name"],
            name="fk_revisions_type_name_documents",
        ),
        sa.PrimaryKeyConstraint("type", "name", "revision", name="pk_revisions"),
    )
    op.create_table(
        "doc_references",
        sa.Column("from_type", KEY, nullable=False),
        sa.Column("from_name", KEY, nullable=False),
        sa.Column("path", PATH, nullable=False),
        sa.Column("to_type", KEY, nullable=False),
        sa.Column("to_name", KEY, nullable=False),
        sa.ForeignKeyConstraint(
            ["from_type", "from_name"],
            ["documents.type", "documents.name"],
            name="fk_doc_references_from_type_from_name_documents",
        ),
        sa.PrimaryKeyConstraint(
            "from_type", "from_name", "path", "to_type", "to_name", name="pk_doc_references"
        ),
    )
    op.create_index("ix_doc_references_to", "doc_references", ["to_type", "to_name"])


def downgrade() -> None:
    op.drop_index("ix_doc_references_to", table_name="doc_references")
    op.drop_table("doc_references")
    op.drop_table("revisions")
    op.drop_table("documents")
