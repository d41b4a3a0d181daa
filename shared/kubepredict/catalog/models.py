"""Models repository (read side; models are created and finished together with their jobs)."""

from __future__ import annotations

from sqlalchemy import func, select

from ..errors import ModelNotFound
from ..ids import iso
from . import schema
from .base import loads, refuse_if_in_use
from .heads import HeadReader


def model_view(row) -> dict:
    return {
        "model_id": row.model_id, "name": row.name, "version": row.version, "status": row.status,
        "task": row.task, "algorithm": row.algorithm, "estimator": row.estimator, "params": loads(row.params),
        "features": loads(row.features), "target": row.target, "dataset_id": row.dataset_id,
        "metrics": loads(row.metrics), "classes": loads(row.classes), "job_id": row.job_id,
        "sha256": row.artifact_sha256, "created_at": iso(row.created_at),
    }


class ModelsRepo:
    _heads: HeadReader | None = None

    @property
    def heads(self) -> HeadReader:
        """The online path's cheap per-request reads (see ``heads.py``)."""
        if self._heads is None:
            self._heads = HeadReader(self.read_engine)
        return self._heads

    def get_model_row(self, model_id: str):
        with self.ro() as conn:
            row = conn.execute(select(schema.models).where(schema.models.c.model_id == model_id)).first()
        if row is None:
            raise ModelNotFound(f"no model with id {model_id}", details={"model_id": model_id})
        return row

    def get_model(self, model_id: str) -> dict:
        return model_view(self.get_model_row(model_id))

    def model_ids(self) -> set[str]:
        """Every model id, whatever its status (a model in training owns its folder before its artifact)."""
        with self.ro() as conn:
            return set(conn.execute(select(schema.models.c.model_id)).scalars())

    def list_models(self, *, limit: int, offset: int, name: str | None = None) -> tuple[list[dict], int]:
        t = schema.models
        where = [t.c.name == name] if name else []
        with self.ro() as conn:
            total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one()
            rows = conn.execute(select(t).where(*where).order_by(t.c.created_at.desc(), t.c.model_id)
                                .limit(limit).offset(offset)).all()
        return [model_view(r) for r in rows], total

    def delete_model(self, model_id: str):
        """Delete a model's row (with a ``model.deleted`` event); 409 while a queued or running job uses it."""
        t, j = schema.models, schema.jobs
        with self.tx() as conn:
            row = conn.execute(select(t).where(t.c.model_id == model_id)).first()
            if row is None:
                raise ModelNotFound(f"no model with id {model_id}", details={"model_id": model_id})
            refuse_if_in_use(conn, j.c.model_id, model_id, "model", "model_in_use")
            conn.execute(t.delete().where(t.c.model_id == model_id))
            self._emit(conn, "model.deleted", model_id, {"model_id": model_id, "name": row.name,
                                                         "version": row.version})
        return row

    def find_model_row(self, name: str, version: int | None = None):
        """The model ``name`` at ``version``, or its newest *ready* version (else its newest) when None."""
        t = schema.models
        with self.ro() as conn:
            if version is not None:
                row = conn.execute(select(t).where(t.c.name == name, t.c.version == version)).first()
            else:
                row = conn.execute(select(t).where(t.c.name == name, t.c.status == "ready")
                                   .order_by(t.c.version.desc()).limit(1)).first()
                if row is None:
                    row = conn.execute(select(t).where(t.c.name == name)
                                       .order_by(t.c.version.desc()).limit(1)).first()
        if row is None:
            what = f"{name!r} version {version}" if version is not None else f"named {name!r}"
            raise ModelNotFound(f"no model {what}", details={"name": name, "version": version})
        return row
