"""jobs: (status, created_at, id) index for the queue position of a queued job

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Every status read of a queued job counts the queued jobs ahead of it with the row comparison
(created_at, id) < (its created_at, its id). With id in the index the count is an index-only
scan; ix_jobs_status_created alone has to visit each row to compare ids.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_status_created_id", ["status", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_created_id")
