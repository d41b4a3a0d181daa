"""Datasets repository."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..errors import DatasetNotFound
from ..ids import utcnow
from . import schema
from .database import Database, refuse_if_in_use
from .outbox import emit
from .records import DatasetRecord

D = schema.datasets


class DatasetsRepo:
    def __init__(self, db: Database):
        self.db = db

    def add_dataset(
        self,
        *,
        dataset_id: str,
        name: str,
        rows: int,
        size_bytes: int,
        sha256: str,
        columns: list[dict[str, Any]],
        preview: list[dict[str, Any]],
        object_key: str,
        parquet_key: str,
    ) -> dict[str, Any]:
        """Insert a dataset and its ``dataset.uploaded`` event in one transaction; returns its view."""
        values = dict(
            dataset_id=dataset_id,
            name=name,
            rows=rows,
            size_bytes=size_bytes,
            sha256=sha256,
            columns=columns,
            preview=preview,
            object_key=object_key,
            parquet_key=parquet_key,
            created_at=utcnow(),
        )
        with self.db.tx() as conn:
            conn.execute(D.insert().values(**values))
            record = DatasetRecord.of(conn.execute(select(D).where(D.c.dataset_id == dataset_id)).one())
            view = record.view()
            emit(
                conn,
                "dataset.uploaded",
                dataset_id,
                {k: view[k] for k in ("dataset_id", "name", "rows", "size_bytes", "sha256")},
            )
        return view

    def get_dataset_row(self, dataset_id: str) -> DatasetRecord:
        with self.db.ro() as conn:
            row = conn.execute(select(D).where(D.c.dataset_id == dataset_id)).first()
        if row is None:
            raise DatasetNotFound(f"no dataset with id {dataset_id}", details={"dataset_id": dataset_id})
        return DatasetRecord.of(row)

    def get_dataset(self, dataset_id: str, *, preview: bool = False) -> dict[str, Any]:
        return self.get_dataset_row(dataset_id).view(preview=preview)

    def dataset_ids(self) -> set[str]:
        """Every dataset id (the orphan sweep's view of which dataset folders are owned)."""
        with self.db.ro() as conn:
            return set(conn.execute(select(D.c.dataset_id)).scalars())

    def list_datasets(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self.db.ro() as conn:
            total = conn.execute(select(func.count()).select_from(D)).scalar_one()
            rows = conn.execute(
                select(D).order_by(D.c.created_at.desc(), D.c.dataset_id).limit(limit).offset(offset)
            ).all()
        return [DatasetRecord.of(r).view() for r in rows], total

    def delete_dataset(self, dataset_id: str) -> DatasetRecord:
        """Delete the catalogue row; 409 while a queued or running job reads it. Returns the old record."""
        with self.db.tx() as conn:
            row = conn.execute(select(D).where(D.c.dataset_id == dataset_id)).first()
            if row is None:
                raise DatasetNotFound(f"no dataset with id {dataset_id}", details={"dataset_id": dataset_id})
            refuse_if_in_use(conn, schema.jobs.c.dataset_id, dataset_id, "dataset", "dataset_in_use")
            conn.execute(D.delete().where(D.c.dataset_id == dataset_id))
        return DatasetRecord.of(row)
