"""Battles keep what uniform pairing would have given their pair, for inverse-propensity weights.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.add_column(sa.Column("uniform_propensity", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.drop_column("uniform_propensity")
