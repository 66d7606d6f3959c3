"""Influencer ids are strings: the real system's are UUIDs (`qa_8c1f2d4e-..._1718284096`).

Databases that hold integer ids keep them, as their decimal text.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch_alter_table recreates the table on SQLite (which cannot ALTER a column's type) and
    # is a plain ALTER TABLE ... USING on PostgreSQL.
    with op.batch_alter_table("batch_key") as batch:
        batch.alter_column(
            "influencer_id",
            type_=sa.String(255),
            existing_type=sa.BigInteger(),
            existing_nullable=False,
            postgresql_using="influencer_id::text",
        )


def downgrade() -> None:
    with op.batch_alter_table("batch_key") as batch:
        batch.alter_column(
            "influencer_id",
            type_=sa.BigInteger(),
            existing_type=sa.String(255),
            existing_nullable=False,
            postgresql_using="influencer_id::bigint",
        )
