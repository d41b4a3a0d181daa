"""Online serving: resolve a model reference to a loaded, cached model, and score a Table with it.

Every wire format (the native ``/function/predict`` bodies, Open Inference Protocol V2, KServe V1,
MLflow's scoring server, Kafka stream scoring) decodes to a ``codecs.table.Table`` and comes here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .. import ml
from ..codecs.table import Table
from ..errors import Conflict, InvalidInput, ModelNotFound, PayloadTooLarge

_VERSIONED = re.compile(r"^(?P<name>[^/]+)/versions/(?P<version>\d{1,9})$")


@dataclass(frozen=True)
class ServedModel:
    """A ready model as the serving path needs it: metadata plus the loaded scorer."""

    model_id: str
    name: str
    version: int
    task: str
    algorithm: str
    features: list[str]
    kinds: dict[str, str]
    classes: list | None
    target: str | None
    sha256: str
    scorer: Any = field(repr=False, compare=False)


def parse_ref(ref: str, version: str | int | None = None) -> tuple[str | None, str | None, int | None]:
    """``(model_id, name, version)`` from ``mdl_…``, ``name``, ``name/versions/N`` (or name + version)."""
    if not isinstance(ref, str) or not ref or len(ref) > 200:
        raise InvalidInput("a model reference must be a model id, a name or name/versions/N", code="invalid_model")
    m = _VERSIONED.match(ref)
    if m:
        ref, version = m["name"], m["version"]
    if version is not None and version != "":
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise InvalidInput(f"model version must be a whole number, not {version!r}",
                               code="invalid_model") from None
        return None, ref, version
    if ref.startswith("mdl_"):
        return ref, None, None
    return None, ref, None


def resolve(svc, ref: str, version: str | int | None = None) -> ServedModel:
    """A ready model for ``ref``: 404 when unknown, 409 while it is still training or failed."""
    model_id, name, ver = parse_ref(ref, version)
    if model_id is not None:
        try:
            row = svc.catalog.get_model_row(model_id)
        except ModelNotFound:
            # A name may look like an id; fall back to it before saying no.
            row = svc.catalog.find_model_row(model_id)
    else:
        row = svc.catalog.find_model_row(name, ver)
    if row.status != "ready":
        raise Conflict(f"model {row.model_id} is {row.status}, not ready; wait for its training job {row.job_id}",
                       code="model_not_ready", details={"status": row.status, "job_id": row.job_id})
    scorer = svc.models.get(row.model_id, row.artifact_sha256,
                            lambda: ml.load_model(svc.storage.get(row.artifact_key), row.artifact_sha256))
    return ServedModel(model_id=row.model_id, name=row.name, version=row.version, task=row.task,
                       algorithm=row.algorithm, features=json.loads(row.features), kinds=json.loads(row.kinds),
                       classes=json.loads(row.classes) if row.classes else None, target=row.target,
                       sha256=row.artifact_sha256, scorer=scorer)


def score(svc, model: ServedModel, table: Table) -> ml.ScoreResult:
    """Predict every row of ``table`` (extra columns ignored; missing features are a 400)."""
    if table.n_rows > svc.settings.max_online_rows:
        raise PayloadTooLarge(f"{table.n_rows} rows is more than the online limit of {svc.settings.max_online_rows}; "
                              "upload a dataset and run a batch prediction",
                              details={"limit": svc.settings.max_online_rows})
    return ml.score(model.scorer, table.frame(), features=model.features, kinds=model.kinds, task=model.task)
