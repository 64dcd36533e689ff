"""Sync marks: which journal lines and snapshots a database already holds (restore replays only the rest).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_marks",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_sync_marks"),
    )


def downgrade() -> None:
    op.drop_table("sync_marks")
