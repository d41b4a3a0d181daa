"""Export a model as a portable bundle (``ml/bundle.py``), and import one back through the same checks.

A bundle's import is refused, with nothing stored, when it is not a bundle or its artefact does not
match its SHA-256 (422), when it was made with another scikit-learn release (409 naming both), or
when its artefact holds a type outside the allow-list (422) — ``ml.load_model`` is the same check
every stored model passes before it serves.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import ml
from ..errors import ArtifactRejected, BundleRejected, Conflict, NotFound
from ..ids import new_id
from ..ml import bundle
from ..ml.algorithms import TASKS
from .datasets import clean_name

#: Beside an imported model's artefact: the manifest it came with (its training request and dataset).
ORIGIN = "bundle-manifest.json"


class _ImportedModel(BaseModel):
    """The manifest's ``model``: what the catalogue row is rebuilt from."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    task: str
    algorithm: Annotated[str, Field(min_length=1, max_length=200)]
    estimator: Annotated[str, Field(max_length=200)] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    features: Annotated[list[str], Field(min_length=1)]
    kinds: dict[str, str]
    target: Annotated[str, Field(max_length=200)] | None = None
    classes: list[Any] | None = None
    metrics: dict[str, Any] | None = None


def training_origin(svc, row) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(training request, dataset {dataset_id, name, sha256, rows})`` of a model, trained here or imported."""
    if row.job_id:
        try:
            request = svc.catalog.get_job_row(row.job_id).request
        except NotFound:
            request = None
        try:
            d = svc.catalog.get_dataset_row(row.dataset_id)
            dataset = {"dataset_id": d.dataset_id, "name": d.name, "sha256": d.sha256, "rows": d.rows}
        except NotFound:
            dataset = {"dataset_id": row.dataset_id, "sha256": None}
        return request, dataset
    try:
        origin = json.loads(svc.storage.get(f"models/{row.model_id}/{ORIGIN}"))
    except Exception:  # noqa: BLE001 - an imported model without its manifest: nothing to say
        return None, None
    return origin.get("training_request"), origin.get("dataset")


def export(svc, model_id: str) -> tuple[str, bytes]:
    """``(file name, zip bytes)`` of a ready model's bundle."""
    row = svc.catalog.get_model_row(model_id)
    if row.status != "ready" or not row.artifact_key:
        raise Conflict(f"model {model_id} is {row.status}; only a ready model has a bundle", code="model_not_ready")
    artifact = svc.storage.get(row.artifact_key)
    if ml.sha256_hex(artifact) != row.artifact_sha256:
        raise ArtifactRejected("model artifact does not match its SHA-256", code="artifact_tampered")
    request, dataset = training_origin(svc, row)
    manifest = {
        "model": {
            "model_id": row.model_id,
            "name": row.name,
            "version": row.version,
            "task": row.task,
            "algorithm": row.algorithm,
            "estimator": row.estimator,
            "params": row.params,
            "features": row.features,
            "kinds": row.kinds,
            "target": row.target,
            "classes": row.classes,
            "metrics": row.metrics,
        },
        "feature_schema": [{"name": f, "kind": (row.kinds or {}).get(f)} for f in row.features or []],
        "metrics": row.metrics,
        "training_request": request,
        "dataset": dataset,
    }
    return f"{row.name}-v{row.version}.kpbundle.zip", bundle.build(artifact, manifest)


def import_bundle(svc, data: bytes, *, name: str | None = None) -> dict[str, Any]:
    """Store the model a bundle holds as a new ready version (of ``name``, else its own name)."""
    manifest, artifact = bundle.read(data, max_artifact=svc.settings.max_upload_bytes)
    try:
        model = _ImportedModel.model_validate(manifest.get("model"))
    except ValidationError as exc:
        raise BundleRejected(f"the bundle's manifest does not describe a model: {exc.errors()[:3]}") from None
    if model.task not in TASKS or set(model.kinds) != set(model.features):
        raise BundleRejected("the bundle's manifest has an unknown task, or kinds that do not match its features")
    bundle.check_compatible(manifest)
    digest = ml.sha256_hex(artifact)
    try:
        ml.load_model(artifact, digest)  # the allow-list every stored model passes; nothing stored yet
    except ArtifactRejected as exc:
        raise BundleRejected(exc.message, code=exc.code, details=exc.details) from exc
    model_id = new_id("mdl")
    stored = svc.storage.put_bytes(f"models/{model_id}/model.skops", artifact)
    svc.storage.put_bytes(f"models/{model_id}/{ORIGIN}", json.dumps(manifest, sort_keys=True).encode())
    dataset: dict[str, Any] = manifest["dataset"] if isinstance(manifest.get("dataset"), dict) else {}
    fields = {
        "model_id": model_id,
        "name": clean_name(name, model.name),
        "task": model.task,
        "algorithm": model.algorithm,
        "estimator": model.estimator,
        "params": model.params,
        "features": model.features,
        "kinds": model.kinds,
        "target": model.target,
        "dataset_id": str(dataset.get("dataset_id") or "imported")[:40],
        "metrics": model.metrics,
        "classes": model.classes,
        "artifact_key": stored.key,
        "artifact_sha256": stored.sha256,
    }
    try:
        return svc.catalog.models.add_imported(
            fields, origin={"source_model_id": (manifest.get("model") or {}).get("model_id"), "sha256": digest}
        )
    except Exception:
        for key in (stored.key, f"models/{model_id}/{ORIGIN}"):
            svc.storage.delete(key)
        raise
