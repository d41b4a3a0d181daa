"""Models repository (read side; models are created and finished together with their jobs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, ModelNotFound
from ..ids import utcnow
from . import schema
from .aliases import aliases_by_model
from .database import Database, refuse_if_in_use
from .heads import HeadReader
from .outbox import emit
from .records import ModelRecord

M = schema.models


class ModelsRepo:
    def __init__(self, db: Database):
        self.db = db
        self._heads: HeadReader | None = None

    @property
    def heads(self) -> HeadReader:
        """The online path's cheap per-request reads (see ``heads.py``)."""
        if self._heads is None:
            self._heads = HeadReader(self.db.read_engine)
        return self._heads

    def get_model_row(self, model_id: str) -> ModelRecord:
        with self.db.ro() as conn:
            row = conn.execute(select(M).where(M.c.model_id == model_id)).first()
        if row is None:
            raise ModelNotFound(f"no model with id {model_id}", details={"model_id": model_id})
        return ModelRecord.of(row)

    def get_model(self, model_id: str) -> dict[str, Any]:
        view = self.get_model_row(model_id).view()
        with self.db.ro() as conn:
            view["aliases"] = aliases_by_model(conn, [model_id]).get(model_id, [])
        return view

    def model_ids(self) -> set[str]:
        """Every model id, whatever its status (a model in training owns its folder before its artifact)."""
        with self.db.ro() as conn:
            return set(conn.execute(select(M.c.model_id)).scalars())

    def failed_model_ids(self) -> set[str]:
        """Models whose training failed for good: nothing will ever read what their folder holds."""
        with self.db.ro() as conn:
            return set(conn.execute(select(M.c.model_id).where(M.c.status == "failed")).scalars())

    def list_models(self, *, limit: int, offset: int, name: str | None = None) -> tuple[list[dict[str, Any]], int]:
        where = [M.c.name == name] if name else []
        with self.db.ro() as conn:
            total = conn.execute(select(func.count()).select_from(M).where(*where)).scalar_one()
            rows = conn.execute(
                select(M).where(*where).order_by(M.c.created_at.desc(), M.c.model_id).limit(limit).offset(offset)
            ).all()
            aliases = aliases_by_model(conn, [r.model_id for r in rows])
        return [{**ModelRecord.of(r).view(), "aliases": aliases.get(r.model_id, [])} for r in rows], total

    def add_imported(self, fields: dict[str, Any], *, origin: dict[str, Any]) -> dict[str, Any]:
        """Insert a ready model from an imported bundle as the next version of its name (``model.imported``)."""
        for _ in range(10):
            try:
                with self.db.tx() as conn:
                    version = (
                        conn.execute(
                            select(func.coalesce(func.max(M.c.version), 0)).where(M.c.name == fields["name"])
                        ).scalar_one()
                        + 1
                    )
                    conn.execute(
                        M.insert().values(**fields, version=version, status="ready", job_id=None, created_at=utcnow())
                    )
                    emit(
                        conn,
                        "model.imported",
                        fields["model_id"],
                        {"model_id": fields["model_id"], "name": fields["name"], "version": version, **origin},
                    )
                return self.get_model(fields["model_id"])
            except IntegrityError:  # a concurrent new version of the name took this number: count again
                continue
        raise Conflict(f"could not number a new version of {fields['name']!r}; retry", code="version_race")

    def delete_model(self, model_id: str) -> ModelRecord:
        """Delete a model's row (with a ``model.deleted`` event); 409 while a queued or running job uses it."""
        with self.db.tx() as conn:
            row = conn.execute(select(M).where(M.c.model_id == model_id)).first()
            if row is None:
                raise ModelNotFound(f"no model with id {model_id}", details={"model_id": model_id})
            refuse_if_in_use(conn, schema.jobs.c.model_id, model_id, "model", "model_in_use")
            conn.execute(M.delete().where(M.c.model_id == model_id))
            emit(conn, "model.deleted", model_id, {"model_id": model_id, "name": row.name, "version": row.version})
        return ModelRecord.of(row)
