"""Predictions repository: bulk writes per job, paginated and streamed reads."""

from __future__ import annotations

from typing import Iterator, Sequence

from sqlalchemy import delete, func, select

from . import schema

P = schema.predictions


class PredictionsRepo:
    def clear_predictions(self, job_id: str) -> None:
        with self.tx() as conn:
            conn.execute(delete(P).where(P.c.job_id == job_id))

    def insert_predictions(self, job_id: str, rows: Sequence[tuple[int, str, str | None]]) -> None:
        """Insert ``(row, prediction_json, probabilities_json)`` tuples in one transaction."""
        if not rows:
            return
        with self.tx() as conn:
            if self.dialect == "postgresql":
                # COPY is several times faster than batched INSERTs for large prediction sets. Text format:
                # json.dumps never emits raw tabs or newlines, so escaping backslashes is all it needs.
                cursor = conn.connection.dbapi_connection.cursor()
                lines = "".join(f"{job_id}\t{r}\t{p.replace(chr(92), chr(92) * 2)}\t"
                                f"{pr.replace(chr(92), chr(92) * 2) if pr is not None else chr(92) + 'N'}\n"
                                for r, p, pr in rows)
                with cursor.copy("COPY predictions (job_id, row, prediction, probabilities) FROM STDIN") as copy:
                    copy.write(lines)
                return
            conn.exec_driver_sql("INSERT INTO predictions (job_id, row, prediction, probabilities) VALUES (?, ?, ?, ?)",
                                 [(job_id, r, p, pr) for r, p, pr in rows])

    def count_predictions(self, job_id: str) -> int:
        with self.ro() as conn:
            return conn.execute(select(func.count()).select_from(P).where(P.c.job_id == job_id)).scalar_one()

    def page_predictions(self, job_id: str, *, offset: int, limit: int) -> list:
        with self.ro() as conn:
            return conn.execute(select(P.c.row, P.c.prediction, P.c.probabilities).where(P.c.job_id == job_id)
                                .order_by(P.c.row).offset(offset).limit(limit)).all()

    def iter_predictions(self, job_id: str, batch: int = 10_000) -> Iterator[list]:
        """Yield batches ordered by row, by keyset pagination (never the whole set in memory)."""
        last = -1
        while True:
            with self.ro() as conn:
                rows = conn.execute(select(P.c.row, P.c.prediction, P.c.probabilities)
                                    .where(P.c.job_id == job_id, P.c.row > last).order_by(P.c.row).limit(batch)).all()
            if not rows:
                return
            yield rows
            last = rows[-1].row
