"""Battles keep the categories of their prompt (LMArena's category columns become leaderboard slices).

Named 0002_audit in the branch's brief; the coordinator re-chains migrations at merge.

Revision ID: 0002_audit
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_audit"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.add_column(sa.Column("categories", sa.String(500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.drop_column("categories")
