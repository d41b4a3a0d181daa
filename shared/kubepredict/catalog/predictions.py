"""Predictions repository: one row per scored batch, holding its predictions as compressed Arrow IPC.

A batch prediction job writes one ``prediction_batches`` row per batch it scores: ``(job_id, first_row,
rows, data)`` where ``data`` is an Arrow IPC stream with two columns, ``prediction`` (the model's native
type: integers, floats, strings or booleans; null where not finite) and ``probabilities`` (a list of
floats per row, null for models without them). Writing a million predictions is a few inserts of a few
megabytes instead of a million rows and a million index entries; reads decode only the batches a page
overlaps, and the CSV download streams them batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pyarrow as pa
from sqlalchemy import delete, func, select

from . import schema
from .database import Database

B = schema.prediction_batches
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


class PredictionRow(NamedTuple):
    row: int
    prediction: object
    probabilities: list[float] | None


def encode_batch(predictions: pa.Array, probabilities: pa.Array, extra: dict[str, pa.Array] | None = None) -> bytes:
    """``extra``: more columns (a forecast's timestamp, series keys and interval bounds)."""
    table = pa.table({"prediction": predictions, "probabilities": probabilities, **(extra or {})})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def decode_batch(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class PredictionsRepo:
    def __init__(self, db: Database):
        self.db = db

    def clear_predictions(self, job_id: str) -> None:
        """A predict attempt starts from a clean slate: its own rows go, and any a failed job still holds
        (left when a full disk refused the delete as it failed; see ``JobsRepo.fail``)."""
        J = schema.jobs
        failed = select(J.c.job_id).where(J.c.status == "failed", J.c.kind == "predict")
        with self.db.tx() as conn:
            conn.execute(delete(B).where(B.c.job_id == job_id))
            conn.execute(delete(B).where(B.c.job_id.in_(failed)))  # two deletes: each can use the job_id index

    def failed_jobs_with_predictions(self) -> list[str]:
        """Failed predict jobs whose prediction rows are still stored (what the orphan sweep reports)."""
        J = schema.jobs
        with self.db.ro() as conn:
            return list(
                conn.execute(
                    select(B.c.job_id)
                    .distinct()
                    .join(J, J.c.job_id == B.c.job_id)
                    .where(J.c.status == "failed")
                    .order_by(B.c.job_id)
                ).scalars()
            )

    def clear_shard_predictions(self, job_id: str, row_start: int, row_stop: int) -> None:
        """A retried shard starts from a clean slate: delete its own batches (those starting in
        ``[row_start, row_stop)``; a shard's batches never cross its range), and only those."""
        with self.db.tx() as conn:
            conn.execute(delete(B).where(B.c.job_id == job_id, B.c.first_row >= row_start, B.c.first_row < row_stop))

    def insert_prediction_batch(
        self,
        job_id: str,
        first_row: int,
        predictions: pa.Array,
        probabilities: pa.Array,
        extra: dict[str, pa.Array] | None = None,
    ) -> None:
        """Store the predictions of rows ``first_row … first_row + len - 1`` (one insert, its own transaction)."""
        n = len(predictions)
        if n == 0:
            return
        if len(probabilities) != n:
            raise ValueError("predictions and probabilities differ in length")
        data = encode_batch(predictions, probabilities, extra)
        with self.db.tx() as conn:
            conn.execute(B.insert().values(job_id=job_id, first_row=first_row, rows=n, data=data))

    def count_predictions(self, job_id: str) -> int:
        with self.db.ro() as conn:
            return int(
                conn.execute(select(func.coalesce(func.sum(B.c.rows), 0)).where(B.c.job_id == job_id)).scalar_one()
            )

    def page_predictions(self, job_id: str, *, offset: int, limit: int) -> list[PredictionRow]:
        """Rows ``offset … offset + limit - 1`` in row order, decoding only the batches they fall in."""
        if limit <= 0:
            return []
        end = offset + limit
        with self.db.ro() as conn:
            parts = conn.execute(
                select(B.c.first_row, B.c.rows, B.c.data)
                .where(B.c.job_id == job_id, B.c.first_row < end, B.c.first_row + B.c.rows > offset)
                .order_by(B.c.first_row)
            ).all()
        out: list[PredictionRow] = []
        for first, rows, data in parts:
            lo, hi = max(offset, first) - first, min(end, first + rows) - first
            table = decode_batch(data).slice(lo, hi - lo)
            out += [
                PredictionRow(first + lo + i, p, pr)
                for i, (p, pr) in enumerate(
                    zip(table.column("prediction").to_pylist(), table.column("probabilities").to_pylist(), strict=True)
                )
            ]
        return out

    def iter_prediction_tables(self, job_id: str) -> Iterator[tuple[int, pa.Table]]:
        """``(first_row, table)`` per stored batch in row order, one batch in memory at a time."""
        last = -1
        while True:
            with self.db.ro() as conn:
                part = conn.execute(
                    select(B.c.first_row, B.c.data)
                    .where(B.c.job_id == job_id, B.c.first_row > last)
                    .order_by(B.c.first_row)
                    .limit(1)
                ).first()
            if part is None:
                return
            last = part.first_row
            yield part.first_row, decode_batch(part.data)

    def iter_predictions(self, job_id: str, batch: int = 10_000) -> Iterator[list[PredictionRow]]:
        """Lists of at most ``batch`` rows, in row order."""
        for first, table in self.iter_prediction_tables(job_id):
            for start in range(0, table.num_rows, batch):
                part = table.slice(start, batch)
                yield [
                    PredictionRow(first + start + i, p, pr)
                    for i, (p, pr) in enumerate(
                        zip(
                            part.column("prediction").to_pylist(), part.column("probabilities").to_pylist(), strict=True
                        )
                    )
                ]
