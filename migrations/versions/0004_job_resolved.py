"""jobs.resolved: the spec resolved at submission (models, file, baseline, defaults)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The API resolves a spec once (clo.resolve.resolve_job) and stores the result; the worker
runs from it. Rows from before this column have NULL and are resolved when they run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("resolved")
