"""predictions stored per scored batch (Arrow IPC) instead of one row per prediction

Revision ID: 0004
Revises: 0003
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
BATCH = 100_000


def upgrade() -> None:
    op.create_table(
        "prediction_batches",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("first_row", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "first_row"),
    )
    _copy_old_predictions(op.get_bind())
    op.drop_table("predictions")


def _copy_old_predictions(conn) -> None:
    """Re-store each job's old rows as batches of consecutive rows (values decoded from their JSON)."""
    import pyarrow as pa

    from kubepredict.catalog.predictions import encode_batch

    old = sa.table(
        "predictions",
        sa.column("job_id", sa.String),
        sa.column("row", sa.BigInteger),
        sa.column("prediction", sa.Text),
        sa.column("probabilities", sa.Text),
    )
    new = sa.table(
        "prediction_batches",
        sa.column("job_id", sa.String),
        sa.column("first_row", sa.BigInteger),
        sa.column("rows", sa.Integer),
        sa.column("data", sa.LargeBinary),
    )
    jobs = [r[0] for r in conn.execute(sa.select(old.c.job_id).distinct())]

    def flush(job_id, rows):
        if not rows:
            return
        preds = [json.loads(p) for _, p, _ in rows]
        try:
            pred_array = pa.array(preds)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pred_array = pa.array([None if p is None else str(p) for p in preds], type=pa.string())
        probas = pa.array(
            [json.loads(pr) if pr is not None else None for _, _, pr in rows], type=pa.list_(pa.float64())
        )
        conn.execute(
            new.insert().values(
                job_id=job_id, first_row=rows[0][0], rows=len(rows), data=encode_batch(pred_array, probas)
            )
        )

    for job_id in jobs:
        pending: list[tuple[Any, ...]] = []
        last = 0  # the previous row number; read only while ``pending`` holds rows
        for r in conn.execute(
            sa.select(old.c.row, old.c.prediction, old.c.probabilities)
            .where(old.c.job_id == job_id)
            .order_by(old.c.row)
        ):
            if pending and (len(pending) >= BATCH or r[0] != last + 1):
                flush(job_id, pending)
                pending = []
            pending.append(tuple(r))
            last = r[0]
        flush(job_id, pending)


def downgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("row", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prediction", sa.Text(), nullable=False),
        sa.Column("probabilities", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "row"),
    )
    op.drop_table("prediction_batches")
