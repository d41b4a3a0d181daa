"""sharded batch prediction: jobs.shards and the job_shards table

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shards", sa.Integer(), nullable=True))
    op.create_table(
        "job_shards",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("row_start", sa.BigInteger(), nullable=False),
        sa.Column("row_stop", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "shard"),
    )
    with op.batch_alter_table("job_shards", schema=None) as batch_op:
        batch_op.create_index("ix_job_shards_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_shards", schema=None) as batch_op:
        batch_op.drop_index("ix_job_shards_status")
    op.drop_table("job_shards")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("shards")
