"""What a worker does for each kind of job: train a model, or score a dataset in chunks."""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from .. import ml
from ..services.datasets import load_frame
from ..services.prediction import load_pipeline

logger = logging.getLogger(__name__)


def run_train(svc, job) -> None:
    catalog, request = svc.catalog, json.loads(job.request)

    def progress(stage: str, value: float) -> None:
        catalog.progress(job.job_id, job.attempt, stage, value)

    progress("loading", 0.02)
    dataset = catalog.get_dataset_row(job.dataset_id)
    columns = ([request["target"]] if request.get("target") else []) + request["features"]
    frame = load_frame(svc, dataset, columns=columns)
    result = ml.train(frame, target=request.get("target"), features=request["features"], task=request["task"],
                      algorithm=request["algorithm"], params=request.get("params") or {},
                      test_size=request.get("test_size", 0.2), random_state=request.get("random_state", 0),
                      progress=progress)
    progress("saving", 0.95)
    blob = ml.dump_model(result.pipeline)
    stored = svc.storage.put_bytes(f"models/{job.model_id}/model.skops", blob)
    catalog.succeed_train(job.job_id, job.attempt, model_id=job.model_id, model_fields={
        "task": result.task, "algorithm": result.algorithm, "estimator": result.estimator, "params": result.params,
        "features": result.features, "kinds": result.kinds, "target": result.target, "metrics": result.metrics,
        "classes": result.classes, "artifact_key": stored.key, "artifact_sha256": stored.sha256})


def _summary(task: str, predictions: list, counts: dict, rows: int) -> dict:
    summary: dict = {"rows": rows}
    if task == "regression":
        values = np.asarray(predictions, dtype=float)
        if values.size:
            qs = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
            summary["quantiles"] = {k: round(float(v), 6) for k, v in zip(("min", "p25", "p50", "p75", "max"), qs)}
            summary["mean"] = round(float(values.mean()), 6)
            hist, edges = np.histogram(values, bins=20)
            summary["histogram"] = {"counts": hist.tolist(), "edges": [round(float(e), 6) for e in edges]}
    else:
        summary["class_counts"] = {str(k): v for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    return summary


def _encode_scalars(values: list) -> list[str]:
    """JSON per prediction; classes repeat, so each distinct value is encoded once."""
    cache: dict = {}
    out = []
    for v in values:
        try:
            out.append(cache[v])
        except KeyError:
            out.append(cache.setdefault(v, json.dumps(v)))
        except TypeError:  # unhashable: encode directly
            out.append(json.dumps(v))
    return out


def _encode_probabilities(result) -> list:
    if result.probabilities is None:
        return [None] * len(result.predictions)
    probas = ml.json_values(result.probabilities)
    if np.isfinite(np.asarray(result.probabilities, dtype=float)).all():
        return [str(p) for p in probas]  # finite floats: Python's list repr is valid JSON, and faster
    return [json.dumps(p) for p in probas]


def run_predict(svc, job) -> None:
    catalog = svc.catalog
    catalog.progress(job.job_id, job.attempt, "loading", 0.02)
    model = catalog.get_model_row(job.model_id)
    pipeline = load_pipeline(svc, model)
    dataset = catalog.get_dataset_row(job.dataset_id)
    frame = load_frame(svc, dataset, columns=None)
    catalog.clear_predictions(job.job_id)  # a retried attempt starts from a clean slate
    total = len(frame)
    started = time.perf_counter()
    regression_values, counts = predict_rows(
        svc, job.job_id, model, pipeline, frame, first_row=0,
        progress=lambda done: catalog.progress(job.job_id, job.attempt, "scoring", 0.05 + 0.9 * min(1.0, done / total)))
    summary = _summary(model.task, regression_values, counts, total)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    catalog.succeed_predict(job.job_id, job.attempt, summary=summary)


def predict_rows(svc, job_id: str, model, pipeline, frame, *, first_row: int, progress) -> tuple[list, dict]:
    """Score ``frame`` — the dataset's rows ``first_row..`` — in chunks and write its predictions.

    The one scoring loop of whole jobs and of shards (runner/shards.py); ``progress(rows_done)``
    after each chunk. Returns ``(regression values, class counts)`` for the job summary.
    """
    catalog = svc.catalog
    features, kinds = json.loads(model.features), json.loads(model.kinds)
    total, chunk = len(frame), max(1, svc.settings.predict_chunk_rows)
    counts: dict = {}
    regression_values: list = []
    for start in range(0, total, chunk):
        part = frame.iloc[start:start + chunk]
        result = ml.score(pipeline, part, features=features, kinds=kinds, task=model.task)
        preds = ml.json_values(result.predictions)
        first = first_row + start
        rows = list(zip(range(first, first + len(preds)), _encode_scalars(preds), _encode_probabilities(result)))
        catalog.insert_predictions(job_id, rows)
        if model.task == "regression":
            regression_values.extend(p for p in preds if p is not None)
        else:
            for p in preds:
                counts[p] = counts.get(p, 0) + 1
        progress(start + len(part))
    return regression_values, counts
