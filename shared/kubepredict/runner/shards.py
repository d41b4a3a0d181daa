"""Sharded batch prediction, worker side: score one shard's rows, and finish the job when all shards did.

A shard reads only its rows: the row groups of the dataset's Parquet copy that overlap its range,
through ``Storage.open_ranged`` (ranged GETs on S3), and scores them with the same loop as a whole
job (``predict_rows`` -> ``score_batches``), storing prediction batches under their dataset row numbers,
so the job's predictions read back in input order whatever order shards finish in. A retried shard
first deletes its own stored batches (by row range), never another shard's.
"""

from __future__ import annotations

import logging

from ..ids import utcnow
from ..services.prediction import load_pipeline
from . import drift_job
from .batch_predict import BatchSummary, peak_rss_mib
from .limits import clamp_model

logger = logging.getLogger(__name__)


def run_predict_shard(svc, job, shard, *, cpus: int | None = None) -> None:
    """Score shard ``shard`` (a ``job_shards`` row we hold the claim of) of predict job ``job``.

    ``cpus`` (the job's CPU allowance) bounds the model's ``n_jobs``.
    """
    from ..services.job_bodies import predict_rows

    catalog = svc.catalog
    catalog.shard_progress(job.job_id, shard.shard, shard.attempt, 0)
    model = catalog.get_model_row(job.model_id)
    pipeline = load_pipeline(svc, model)
    clamp_model(pipeline, cpus)
    dataset = catalog.get_dataset_row(job.dataset_id)
    catalog.clear_shard_predictions(job.job_id, shard.row_start, shard.row_stop)
    counter = drift_job.load_counter(svc, model)
    result = predict_rows(
        svc,
        job.job_id,
        model,
        pipeline,
        dataset,
        row_start=shard.row_start,
        row_stop=shard.row_stop,
        progress=lambda done: catalog.shard_progress(job.job_id, shard.shard, shard.attempt, done),
        drift=counter,
    )
    summary = {
        **result.partial(),
        "peak_rss_mib": peak_rss_mib(),
        "drift": drift_job.shard_partial(counter, svc.settings.drift_psi_threshold),
    }
    if catalog.succeed_shard(job.job_id, shard.shard, shard.attempt, summary=summary):
        finalize(catalog, job.job_id)


def finalize(catalog, job_id: str) -> bool:
    """Mark a sharded job succeeded with one summary over all shards; False if it is not (or no longer) ours.

    Called by the worker whose shard was the last to succeed, and by the dispatcher for a job whose
    shards all succeeded but whose last worker died before this (idempotent: the job is only
    succeeded once, by a conditional update). Class counts are the shards' counts summed (in shard
    order, so ties list classes as an unsharded job does); regression figures come from every stored
    prediction, in row order, as an unsharded job computes them.
    """
    from ..errors import JobCancelled

    job = catalog.get_job_row(job_id)
    if job.status != "running":
        return False
    model = catalog.get_model_row(job.model_id)
    partials = catalog.shard_summaries(job_id)
    total = BatchSummary(model.task)
    for partial in partials:
        total.merge(BatchSummary.from_partial(model.task, partial))
    if model.task == "regression":
        for _first_row, table in catalog.iter_prediction_tables(job_id):
            total.add_stored(table.column("prediction"))
    summary = total.as_dict()
    summary["seconds"] = round(((utcnow() - job.started_at).total_seconds()) if job.started_at else 0.0, 3)
    summary["shards"] = len(partials)
    summary["drift"] = drift_job.merged_report([p.get("drift") for p in partials])
    peaks = [p["peak_rss_mib"] for p in partials if p.get("peak_rss_mib") is not None]
    if peaks:
        summary["peak_rss_mib"] = max(peaks)  # of the largest shard worker
    try:
        catalog.succeed_predict(job_id, job.attempt, summary=summary)
    except JobCancelled:
        return False
    logger.info("job %s: all %s shards succeeded", job_id, len(partials))
    return True
