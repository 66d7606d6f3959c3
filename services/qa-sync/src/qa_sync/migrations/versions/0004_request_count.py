"""`total_qa_pairs` means pairs, as in the processed JSON; the request count gets its own column.

Before this revision the registry's `total_qa_pairs` held the batch's request count while the
processed JSON's `total_qa_pairs` held its pairs: one name, two numbers. Existing rows keep both
numbers: the request count moves to `request_count`, and `total_qa_pairs` takes the pair count.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batch_key", sa.Column("request_count", sa.Integer()))
    op.execute(
        "UPDATE batch_key SET request_count = total_qa_pairs, total_qa_pairs = generated_qa_pairs"
    )


def downgrade() -> None:
    op.execute("UPDATE batch_key SET total_qa_pairs = request_count")
    with op.batch_alter_table("batch_key") as batch:
        batch.drop_column("request_count")
