"""What a worker does for each kind of job: train a model, or score a dataset batch by batch."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

from .. import ml
from ..ml.drift import DriftCounter
from ..ml.profile import profile_key
from ..runner import drift_job
from ..runner.batch_predict import BatchSummary, peak_rss_mib, range_batches, score_batches
from ..runner.limits import clamp_model, clamp_parallelism
from . import forecast_jobs, promotion
from .datasets import load_frame, open_parquet
from .explaining import explain_frame
from .prediction import load_pipeline

logger = logging.getLogger(__name__)


def run_train(svc, job, *, cpus: int | None = None) -> None:
    """Train and store the job's model; ``cpus`` (the job's CPU allowance) bounds its ``n_jobs``."""
    catalog, request = svc.catalog, job.request
    if request.get("task") == "forecasting":
        return forecast_jobs.run_train(svc, job, cpus=cpus)

    def progress(stage: str, value: float) -> None:
        catalog.progress(job.job_id, job.attempt, stage, value)

    progress("loading", 0.02)
    started = time.perf_counter()
    dataset = catalog.get_dataset_row(job.dataset_id)
    columns = ([request["target"]] if request.get("target") else []) + request["features"]
    frame = [load_frame(svc, dataset, columns=columns)]
    loaded = time.perf_counter()
    # Handed over (popped), not kept here: training frees the frame once split, before the fit.
    result = ml.train(
        frame.pop(),
        target=request.get("target"),
        features=request["features"],
        task=request["task"],
        algorithm=request["algorithm"],
        params=clamp_parallelism(request.get("params") or {}, cpus),
        test_size=request.get("test_size", 0.2),
        random_state=request.get("random_state", 0),
        progress=progress,
    )
    progress("saving", 0.95)
    trained = time.perf_counter()
    blob = ml.dump_model(result.pipeline)
    stored = svc.storage.put_bytes(f"models/{job.model_id}/model.skops", blob)
    if result.profile is not None:
        svc.storage.put_bytes(profile_key(job.model_id), json.dumps(result.profile, allow_nan=False).encode())
    logger.info(
        "job %s: data loaded in %.2f s, trained in %.2f s (fit %.2f s), model saved in %.2f s",
        job.job_id,
        loaded - started,
        trained - loaded,
        result.metrics.get("fit_seconds", 0),
        time.perf_counter() - trained,
    )
    fields = {
        "task": result.task,
        "algorithm": result.algorithm,
        "estimator": result.estimator,
        "params": result.params,
        "features": result.features,
        "kinds": result.kinds,
        "target": result.target,
        "metrics": result.metrics,
        "classes": result.classes,
        "artifact_key": stored.key,
        "artifact_sha256": stored.sha256,
    }
    spec = request.get("promote")
    if not spec:
        catalog.succeed_train(job.job_id, job.attempt, model_id=job.model_id, model_fields=fields)
        return
    progress("promoting", 0.97)
    row = catalog.get_model_row(job.model_id)
    new = SimpleNamespace(model_id=row.model_id, name=row.name, version=row.version, **fields)
    promotion.settle(
        lambda: catalog.aliases.holder(row.name, spec["alias"]),
        promotion.decider(svc, new, result.pipeline, spec, load_pipeline=load_pipeline),
        lambda decision, expected: catalog.succeed_train(
            job.job_id, job.attempt, model_id=job.model_id, model_fields=fields, promotion=(decision, expected)
        ),
    )


def run_predict(svc, job, *, cpus: int | None = None) -> None:
    """Score every row of the dataset's Parquet copy, batch by batch, into the catalogue.

    ``cpus`` (the job's CPU allowance) bounds the model's ``n_jobs``.
    """
    catalog = svc.catalog
    catalog.progress(job.job_id, job.attempt, "loading", 0.02)
    model = catalog.get_model_row(job.model_id)
    pipeline = load_pipeline(svc, model)
    if model.task == "forecasting":
        if pipeline.get("regressor") is not None:
            clamp_model(pipeline["regressor"], cpus)
        return forecast_jobs.run_predict(svc, job, model, pipeline)
    clamp_model(pipeline, cpus)
    dataset = catalog.get_dataset_row(job.dataset_id)
    catalog.clear_predictions(job.job_id)  # a retried attempt starts from a clean slate
    started = time.perf_counter()
    total = max(int(dataset.rows or 0), 1)
    counter = drift_job.load_counter(svc, model)
    result = predict_rows(
        svc,
        job.job_id,
        model,
        pipeline,
        dataset,
        row_start=0,
        row_stop=None,
        progress=lambda done: catalog.progress(job.job_id, job.attempt, "scoring", 0.05 + 0.9 * min(1.0, done / total)),
        drift=counter,
    )
    summary = result.as_dict()
    summary["drift"] = drift_job.report(counter, svc.settings.drift_psi_threshold)
    if job.request.get("explain"):
        catalog.progress(job.job_id, job.attempt, "explaining", 0.96)
        frame = load_frame(svc, dataset, columns=model.features)
        summary["explanations"] = explain_frame(
            svc,
            model.model_id,
            model.artifact_sha256,
            pipeline,
            frame,
            features=model.features,
            kinds=model.kinds,
            task=model.task,
        )
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["peak_rss_mib"] = peak_rss_mib()
    catalog.succeed_predict(job.job_id, job.attempt, summary=summary)


def predict_rows(
    svc, job_id: str, model, pipeline, dataset, *, row_start: int, row_stop: int | None, progress, drift=None
) -> BatchSummary:
    """Score the dataset's rows ``[row_start, row_stop)`` (``None``: to the end) and store their predictions.

    The boundary shared by whole jobs and shards (runner/shards.py): a shard (``row_stop`` given) reads
    its row groups through ranged reads. ``progress(rows_done)`` after each batch; ``drift`` (a
    ``DriftCounter`` or a report of its absence) counts the rows for the job's drift report.
    """
    features, kinds = model.features, model.kinds
    with open_parquet(svc, dataset) as parquet:
        ml.check_columns(parquet.schema_arrow.names, features)
        stop = parquet.metadata.num_rows if row_stop is None else row_stop
        batches = range_batches(parquet, row_start, stop, columns=features, batch_size=svc.settings.predict_chunk_rows)
        return score_batches(
            svc.catalog,
            job_id,
            pipeline,
            features=features,
            kinds=kinds,
            task=model.task,
            batches=batches,
            first_row=row_start,
            progress=progress,
            drift=drift if isinstance(drift, DriftCounter) else None,
        )
