"""Votes keep the visitor's optional "why?"; battles are indexed by client for rate limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("votes") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    op.create_index("ix_battles_client_hash_created_at", "battles", ["client_hash", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_battles_client_hash_created_at", table_name="battles")
    with op.batch_alter_table("votes") as batch:
        batch.drop_column("reason")
