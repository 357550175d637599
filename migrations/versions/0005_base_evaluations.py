"""base_evaluations: cached base-model evaluation results

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Every evaluation reports the base model beside the trained one; the base's answers depend
only on (model, revision, prompt set, decoding, evaluator version), so they are computed
once per key and reused by every later job on that base.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_evaluations",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_base_evaluations")),
    )


def downgrade() -> None:
    op.drop_table("base_evaluations")
