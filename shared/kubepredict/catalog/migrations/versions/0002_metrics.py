"""metrics: jobs.rows and the invocations aggregate

Revision ID: 0002
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rows", sa.BigInteger(), nullable=True))
    op.create_table(
        "invocations",
        sa.Column("function_name", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=3), nullable=False),
        sa.Column("le", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "code", "le"),
    )
    # Backfill rows from the JSON summary of predict jobs that finished before this column existed.
    jobs = sa.table(
        "jobs",
        sa.column("job_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("status", sa.String),
        sa.column("summary", sa.Text),
        sa.column("rows", sa.BigInteger),
    )
    conn = op.get_bind()
    done = conn.execute(
        sa.select(jobs.c.job_id, jobs.c.summary).where(
            jobs.c.kind == "predict", jobs.c.status == "succeeded", jobs.c.summary.is_not(None)
        )
    ).all()
    for job_id, summary in done:
        rows = (json.loads(summary) or {}).get("rows")
        if isinstance(rows, int):
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(rows=rows))


def downgrade() -> None:
    op.drop_table("invocations")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("rows")
