"""Evaluation campaigns: prompt sets, pre-generated answers and their judgments (docs/campaigns.md).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Written out in full, not imported from arena.storage.tables: a migration is a frozen snapshot.
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_table(
        "campaign_prompts",
        sa.Column("campaign_id", sa.String(100), nullable=False),
        sa.Column("prompt_id", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("turns", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_campaign_prompts_campaign_id_campaigns", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("campaign_id", "prompt_id", name="pk_campaign_prompts"),
    )
    op.create_table(
        "campaign_answers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("campaign_id", sa.String(100), nullable=False),
        sa.Column("prompt_id", sa.String(200), nullable=False),
        sa.Column("candidate", sa.String(200), nullable=False),
        sa.Column("setting", sa.String(32), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("turns", sa.Text(), nullable=False),
        sa.Column("rendered_prompt", sa.Text(), nullable=True),
        sa.Column("params", sa.Text(), server_default="{}", nullable=False),
        sa.Column("finish_reason", sa.String(16), nullable=True),
        sa.Column("generated_tokens", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("total_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("run >= 1", name="ck_campaign_answers_run"),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_campaign_answers_campaign_id_campaigns", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_answers"),
    )
    op.create_index(
        "ix_campaign_answers_key",
        "campaign_answers",
        ["campaign_id", "prompt_id", "candidate", "setting", "run"],
        unique=True,
    )
    op.create_table(
        "campaign_votes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("campaign_id", sa.String(100), nullable=False),
        sa.Column("prompt_id", sa.String(200), nullable=False),
        sa.Column("answer_a", sa.String(32), nullable=False),
        sa.Column("answer_b", sa.String(32), nullable=False),
        sa.Column("pair_key", sa.String(65), nullable=False),
        sa.Column("model_a", sa.String(200), nullable=False),
        sa.Column("model_b", sa.String(200), nullable=False),
        sa.Column("setting", sa.String(32), nullable=False),
        sa.Column("language", sa.String(32), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("winner", sa.String(16), nullable=False),
        sa.Column("flags", sa.String(500), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("client_hash", sa.String(128), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=True),
        sa.Column("uniform_propensity", sa.Float(), nullable=True),
        sa.CheckConstraint("winner IN ('model_a', 'model_b', 'tie', 'tie (bothbad)')", name="ck_campaign_votes_winner"),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_campaign_votes_campaign_id_campaigns", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_votes"),
    )
    op.create_index(
        "ix_campaign_votes_client_pair", "campaign_votes", ["campaign_id", "client_hash", "pair_key"], unique=True
    )
    op.create_index("ix_campaign_votes_client_hash_created_at", "campaign_votes", ["client_hash", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_campaign_votes_client_hash_created_at", table_name="campaign_votes")
    op.drop_index("ix_campaign_votes_client_pair", table_name="campaign_votes")
    op.drop_table("campaign_votes")
    op.drop_index("ix_campaign_answers_key", table_name="campaign_answers")
    op.drop_table("campaign_answers")
    op.drop_table("campaign_prompts")
    op.drop_table("campaigns")
