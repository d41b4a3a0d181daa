"""What the catalogue hands out: small frozen records (JSON fields already decoded) and public views.

A record is one row as Python values, read by attribute (``job.request["features"]``, ``model.kinds``);
nothing outside ``catalog/`` sees the JSON text the columns hold. A view is the dict the API returns for
a record: dates as ISO text, internal fields (a job's request, storage keys) left out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

from sqlalchemy.engine import Row

from ..ids import iso, utcnow


class _Record:
    @classmethod
    def of(cls, row: Row[Any]) -> Self:
        """The record of a row selected with (at least) every field of the record."""
        m = row._mapping
        return cls(**{f: m[f] for f in _field_names(cls)})


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class DatasetRecord(_Record):
    dataset_id: str
    name: str
    rows: int
    size_bytes: int
    sha256: str
    columns: list[dict[str, Any]]  # {name, dtype, missing, unique} per column
    preview: list[dict[str, Any]]  # the first rows
    object_key: str
    parquet_key: str
    created_at: datetime

    @property
    def column_names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def view(self, *, preview: bool = False) -> dict[str, Any]:
        out = {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "rows": self.rows,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "columns": self.columns,
            "created_at": iso(self.created_at),
        }
        if preview:
            out["preview"] = self.preview
        return out


@dataclass(frozen=True, slots=True)
class ModelRecord(_Record):
    model_id: str
    name: str
    version: int
    status: str  # training | ready | failed
    task: str
    algorithm: str
    estimator: str | None
    params: dict[str, Any]
    features: list[str] | None
    kinds: dict[str, str] | None
    target: str | None
    dataset_id: str
    metrics: dict[str, Any] | None
    classes: list[Any] | None
    artifact_key: str | None
    artifact_sha256: str | None
    job_id: str | None
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "task": self.task,
            "algorithm": self.algorithm,
            "estimator": self.estimator,
            "params": self.params,
            "features": self.features,
            "target": self.target,
            "dataset_id": self.dataset_id,
            "metrics": self.metrics,
            "classes": self.classes,
            "job_id": self.job_id,
            "sha256": self.artifact_sha256,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class JobRecord(_Record):
    job_id: str
    kind: str  # train | predict
    status: str  # queued | running | succeeded | failed | cancelled
    stage: str | None
    progress: float
    model_id: str | None
    dataset_id: str | None
    attempt: int
    max_attempts: int
    request: dict[str, Any]  # the validated submit body the worker runs (internal: not in the view)
    error: dict[str, Any] | None
    metrics: dict[str, Any] | None
    summary: dict[str, Any] | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    rows: int | None
    shards: int | None

    @property
    def resources(self) -> dict[str, Any]:
        """The job's resource requests/limits as submitted (``{}``: the runner's defaults)."""
        return (self.request or {}).get("resources") or {}

    def view(self) -> dict[str, Any]:
        """The job as the API shows it (no ``request``: that is the worker's input, not the user's output)."""
        duration = None
        if self.started_at is not None:
            duration = round(((self.finished_at or utcnow()) - self.started_at).total_seconds(), 3)
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress or 0.0, 4),
            "stage": self.stage,
            "model_id": self.model_id,
            "dataset_id": self.dataset_id,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_seconds": duration,
            "error": self.error,
            "metrics": self.metrics,
            "summary": self.summary,
            "worker": self.worker,
            "shards": self.shards,
        }

    def listed(self) -> dict[str, Any]:
        """The job as a list shows it: the view with the summary's bulky parts cut to their headline
        (a drift report's per-feature histograms, per-row explanations). ``GET /function/result/{id}``
        has them in full."""
        out = self.view()
        out["summary"] = compact_summary(self.summary)
        return out


#: What a job list keeps of a drift report (the per-feature detail is in the job itself).
DRIFT_HEADLINE = ("available", "code", "reason", "rows", "threshold", "detected", "max_psi", "worst_feature")


def compact_summary(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if not summary or not ({"drift", "explanations"} & summary.keys()):
        return summary
    out = dict(summary)
    drift = out.get("drift")
    if isinstance(drift, dict):
        out["drift"] = {k: drift[k] for k in DRIFT_HEADLINE if k in drift}
    explanations = out.get("explanations")
    if isinstance(explanations, dict):
        out["explanations"] = {k: v for k, v in explanations.items() if k != "rows"} | {
            "rows": len(explanations.get("rows") or [])
        }
    return out


@dataclass(frozen=True, slots=True)
class ShardRecord(_Record):
    job_id: str
    shard: int
    kind: str  # the parent job's kind
    row_start: int
    row_stop: int
    status: str
    attempt: int
    rows_done: int
    worker: str | None
    heartbeat_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None
    summary: dict[str, Any] | None

    def view(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "status": self.status,
            "attempt": self.attempt,
            "row_start": self.row_start,
            "row_stop": self.row_stop,
            "rows_done": self.rows_done,
            "worker": self.worker,
            "error": self.error,
        }
