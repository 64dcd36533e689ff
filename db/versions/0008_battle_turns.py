"""Battles imported without their conversations keep the file's turn count (it was exported as 0).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.add_column(sa.Column("turns", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.drop_column("turns")
