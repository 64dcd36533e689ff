"""Battles keep the categories of their prompt (LMArena's category columns become leaderboard slices).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.add_column(sa.Column("categories", sa.String(500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.drop_column("categories")
