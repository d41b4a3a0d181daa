"""Datasets repository."""

from __future__ import annotations

from sqlalchemy import func, select

from ..errors import DatasetNotFound
from ..ids import iso, utcnow
from . import schema
from .base import dumps, loads, refuse_if_in_use

def dataset_view(row, *, preview: bool = False) -> dict:
    out = {
        "dataset_id": row.dataset_id, "name": row.name, "rows": row.rows, "size_bytes": row.size_bytes,
        "sha256": row.sha256, "columns": loads(row.columns), "created_at": iso(row.created_at),
    }
    if preview:
        out["preview"] = loads(row.preview)
    return out


class DatasetsRepo:
    def add_dataset(self, *, dataset_id: str, name: str, rows: int, size_bytes: int, sha256: str, columns: list,
                    preview: list, object_key: str, parquet_key: str) -> dict:
        """Insert a dataset and its ``dataset.uploaded`` event in one transaction."""
        values = dict(dataset_id=dataset_id, name=name, rows=rows, size_bytes=size_bytes, sha256=sha256,
                      columns=dumps(columns), preview=dumps(preview), object_key=object_key,
                      parquet_key=parquet_key, created_at=utcnow())
        with self.tx() as conn:
            conn.execute(schema.datasets.insert().values(**values))
            row = conn.execute(select(schema.datasets).where(schema.datasets.c.dataset_id == dataset_id)).one()
            view = dataset_view(row)
            self._emit(conn, "dataset.uploaded", dataset_id, {k: view[k] for k in
                                                                ("dataset_id", "name", "rows", "size_bytes", "sha256")})
        return view

    def get_dataset_row(self, dataset_id: str):
        with self.ro() as conn:
            row = conn.execute(select(schema.datasets).where(schema.datasets.c.dataset_id == dataset_id)).first()
        if row is None:
            raise DatasetNotFound(f"no dataset with id {dataset_id}", details={"dataset_id": dataset_id})
        return row

    def get_dataset(self, dataset_id: str, *, preview: bool = False) -> dict:
        return dataset_view(self.get_dataset_row(dataset_id), preview=preview)

    def dataset_ids(self) -> set[str]:
        """Every dataset id (the orphan sweep's view of which dataset folders are owned)."""
        with self.ro() as conn:
            return set(conn.execute(select(schema.datasets.c.dataset_id)).scalars())

    def list_datasets(self, *, limit: int, offset: int) -> tuple[list[dict], int]:
        t = schema.datasets
        with self.ro() as conn:
            total = conn.execute(select(func.count()).select_from(t)).scalar_one()
            rows = conn.execute(select(t).order_by(t.c.created_at.desc(), t.c.dataset_id)
                                .limit(limit).offset(offset)).all()
        return [dataset_view(r) for r in rows], total

    def delete_dataset(self, dataset_id: str):
        """Delete the catalogue row; 409 while a queued or running job reads it. Returns the old row."""
        d, j = schema.datasets, schema.jobs
        with self.tx() as conn:
            row = conn.execute(select(d).where(d.c.dataset_id == dataset_id)).first()
            if row is None:
                raise DatasetNotFound(f"no dataset with id {dataset_id}", details={"dataset_id": dataset_id})
            refuse_if_in_use(conn, j.c.dataset_id, dataset_id, "dataset", "dataset_in_use")
            conn.execute(d.delete().where(d.c.dataset_id == dataset_id))
        return row
