"""What the sync needs: checksums and sizes, attempts, verification, leases, webhook ids.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> tuple[sa.Column[Any], ...]:
    # Fresh objects each call: a Column belongs to the first table it is added to.
    return (
        sa.Column("error_file_id", sa.String(255)),
        sa.Column("provider_status", sa.String(32)),
        sa.Column("processed_sha256", sa.String(64)),
        sa.Column("processed_size_bytes", sa.BigInteger()),
        sa.Column("raw_sha256", sa.String(64)),
        sa.Column("raw_size_bytes", sa.BigInteger()),
        sa.Column("line_stats", sa.JSON()),
        sa.Column("poll_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sync_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("repair_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_verified_at", sa.DateTime()),
        sa.Column("last_verification", sa.String(32)),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_until", sa.DateTime()),
    )


def upgrade() -> None:
    for column in _columns():
        op.add_column("batch_key", column)
    op.create_index("ix_batch_key_status", "batch_key", ["status"])
    op.create_table(
        "qa_sync_webhook_event",
        sa.Column("webhook_id", sa.String(255), primary_key=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("openai_batch_id", sa.String(255)),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("qa_sync_webhook_event")
    op.drop_index("ix_batch_key_status", table_name="batch_key")
    with op.batch_alter_table("batch_key") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
