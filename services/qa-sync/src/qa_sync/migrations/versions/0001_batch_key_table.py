"""The BATCH_KEY table as the old system created it; an existing one is adopted as it is.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("batch_key"):
        return  # a database the old system already uses: keep its table and rows
    op.create_table(
        "batch_key",
        sa.Column(
            "batch_key_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("influencer_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_key", sa.String(255)),
        sa.Column("task_id", sa.String(255), nullable=False, unique=True),
        sa.Column("openai_batch_id", sa.String(255), unique=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total_qa_pairs", sa.Integer()),
        sa.Column("generated_qa_pairs", sa.Integer()),
        sa.Column("input_file_id", sa.String(255)),
        sa.Column("output_file_id", sa.String(255)),
        sa.Column("error_message", sa.Text()),
        sa.Column("vllm_task_id", sa.String(255)),
        sa.Column("s3_qa_file_url", sa.String(1024)),
        sa.Column("s3_processed_file_url", sa.String(1024)),
        sa.Column("is_processed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_uploaded_to_s3", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_finetuning_started", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime()),
    )
    op.create_index("ix_batch_key_influencer_id", "batch_key", ["influencer_id"])


def downgrade() -> None:
    op.drop_table("batch_key")
