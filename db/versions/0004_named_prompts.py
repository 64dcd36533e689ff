"""Side-by-side prompts are kept as fingerprints, to spot replays of anonymous prompts (issue 16).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Written out in full, not imported from arena.storage.tables: a migration is a frozen snapshot.
    op.create_table(
        "named_prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_hash", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_named_prompts"),
    )
    op.create_index("ix_named_prompts_client_hash_created_at", "named_prompts", ["client_hash", "created_at"])
    op.create_index("ix_named_prompts_created_at", "named_prompts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_named_prompts_created_at", table_name="named_prompts")
    op.drop_index("ix_named_prompts_client_hash_created_at", table_name="named_prompts")
    op.drop_table("named_prompts")
