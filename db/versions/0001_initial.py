"""Initial schema: models, battles, messages, votes.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Written out in full, not imported from arena.storage.tables: a migration is a frozen snapshot.
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "battles",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_a", sa.String(200), nullable=False),
        sa.Column("model_b", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_hash", sa.String(128), nullable=False),
        sa.Column("language", sa.String(32), nullable=True),
        sa.Column("propensity", sa.Float(), nullable=True),
        sa.CheckConstraint("mode IN ('anonymous', 'named')", name="ck_battles_mode"),
        sa.CheckConstraint("pool IN ('chat', 'base')", name="ck_battles_pool"),
        sa.ForeignKeyConstraint(["model_a"], ["models.name"], name="fk_battles_model_a_models"),
        sa.ForeignKeyConstraint(["model_b"], ["models.name"], name="fk_battles_model_b_models"),
        sa.PrimaryKeyConstraint("id", name="pk_battles"),
    )
    op.create_index("ix_battles_created_at", "battles", ["created_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("battle_id", sa.String(36), nullable=False),
        sa.Column("side", sa.String(1), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(16), nullable=True),
        sa.Column("generated_tokens", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("total_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("side IN ('a', 'b')", name="ck_messages_side"),
        sa.CheckConstraint("role IN ('system', 'user', 'assistant')", name="ck_messages_role"),
        sa.CheckConstraint("finish_reason IN ('length', 'eos', 'stop')", name="ck_messages_finish_reason"),
        sa.CheckConstraint("turn >= 0", name="ck_messages_turn"),
        sa.ForeignKeyConstraint(
            ["battle_id"], ["battles.id"], name="fk_messages_battle_id_battles", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("ix_messages_battle_id_turn", "messages", ["battle_id", "turn"])
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("battle_id", sa.String(36), nullable=False),
        sa.Column("winner", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flags", sa.String(500), server_default="", nullable=False),
        sa.CheckConstraint("winner IN ('model_a', 'model_b', 'tie', 'tie (bothbad)')", name="ck_votes_winner"),
        sa.ForeignKeyConstraint(["battle_id"], ["battles.id"], name="fk_votes_battle_id_battles", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_votes"),
        sa.UniqueConstraint("battle_id", name="uq_votes_battle_id"),
    )


def downgrade() -> None:
    op.drop_table("votes")
    op.drop_index("ix_messages_battle_id_turn", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_battles_created_at", table_name="battles")
    op.drop_table("battles")
    op.drop_table("models")
