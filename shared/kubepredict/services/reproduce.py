"""``kubepredict verify``: retrain a model from its stored request and dataset, compare held-out predictions.

A model is reproducible when the retrained pipeline predicts exactly what the stored one predicts on the
rows training held out (the same ``random_state`` gives the same split and the same fit). The dataset
is the one recorded with the model, checked against its SHA-256.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ml
from ..errors import Conflict, NotFound
from ..ml.training import held_out
from .bundles import training_origin
from .datasets import load_frame


def verify(svc, model_id: str) -> dict[str, Any]:
    row = svc.catalog.get_model_row(model_id)
    if row.status != "ready":
        raise Conflict(f"model {model_id} is {row.status}, not ready", code="model_not_ready")
    request, recorded = training_origin(svc, row)
    if not request:
        raise NotFound(f"model {model_id} has no stored training request", code="request_not_found")
    try:
        dataset = svc.catalog.get_dataset_row(request["dataset_id"])
    except NotFound:
        raise NotFound(
            f"the training dataset {request['dataset_id']} is not in this catalogue; upload it to verify",
            code="dataset_not_found",
        ) from None
    if recorded and recorded.get("sha256") and recorded["sha256"] != dataset.sha256:
        raise Conflict("the dataset's SHA-256 differs from the one trained on", code="dataset_changed")
    target, features, task = request.get("target"), request["features"], row.task
    columns = ([target] if target else []) + features
    split = {"test_size": request.get("test_size", 0.2), "random_state": request.get("random_state", 0)}
    retrained = ml.train(
        load_frame(svc, dataset, columns=columns),
        target=target,
        features=features,
        task=request.get("task") or task,
        algorithm=request["algorithm"],
        params=request.get("params") or {},
        **split,
    )
    X = held_out(load_frame(svc, dataset, columns=columns), target=target, features=features, task=task, **split)
    stored = ml.load_model(svc.storage.get(row.artifact_key), row.artifact_sha256)
    ours, theirs = stored.predict(X), retrained.pipeline.predict(X)
    same = np.asarray(ours == theirs)
    identical = bool(same.all()) and len(ours) == len(theirs)
    if identical and hasattr(stored, "predict_proba") and hasattr(retrained.pipeline, "predict_proba"):
        identical = bool(np.array_equal(stored.predict_proba(X), retrained.pipeline.predict_proba(X)))
    return {
        "model_id": model_id,
        "identical": identical,
        "held_out_rows": len(X),
        "mismatched_rows": int((~same).sum()) if same.shape == (len(X),) else len(X),
        "random_state": split["random_state"],
        "dataset_id": dataset.dataset_id,
        "dataset_sha256": dataset.sha256,
        "algorithm": retrained.algorithm,
    }
