"""Sharded batch prediction, worker side: score one shard's rows, and finish the job when all shards did.

A shard reads only its rows: the row groups of the dataset's Parquet copy that overlap its range,
through ``Storage.open_ranged`` (ranged GETs on S3), then writes predictions under their dataset row
numbers, so the job's predictions are in input order whatever order shards finish in. A retried
shard first deletes its own rows (by range), never another shard's.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from ..ids import utcnow
from ..services.prediction import load_pipeline

logger = logging.getLogger(__name__)


def row_groups_for(metadata, row_start: int, row_stop: int) -> tuple[list[int], int]:
    """The row groups overlapping ``[row_start, row_stop)`` and the dataset row their first one starts at."""
    groups, first, offset = [], None, 0
    for i in range(metadata.num_row_groups):
        n = metadata.row_group(i).num_rows
        if offset < row_stop and offset + n > row_start:
            groups.append(i)
            first = offset if first is None else first
        offset += n
    return groups, (first if first is not None else row_start)


def read_rows(svc, dataset_row, row_start: int, row_stop: int):
    """The dataset's rows ``[row_start, row_stop)`` as a DataFrame, reading only the row groups they are in."""
    import pyarrow.parquet as pq

    with svc.storage.open_ranged(dataset_row.parquet_key) as f:
        pf = pq.ParquetFile(f, pre_buffer=True)  # coalesced reads: few ranged GETs per row group
        groups, first = row_groups_for(pf.metadata, row_start, row_stop)
        table = pf.read_row_groups(groups, use_pandas_metadata=True)
    table = table.slice(row_start - first, row_stop - row_start)
    return table.to_pandas()


def run_predict_shard(svc, job, shard) -> None:
    """Score shard ``shard`` (a ``job_shards`` row we hold the claim of) of predict job ``job``."""
    from .jobs import predict_rows

    catalog = svc.catalog
    catalog.shard_progress(job.job_id, shard.shard, shard.attempt, 0)
    model = catalog.get_model_row(job.model_id)
    pipeline = load_pipeline(svc, model)
    frame = read_rows(svc, catalog.get_dataset_row(job.dataset_id), shard.row_start, shard.row_stop)
    catalog.clear_shard_predictions(job.job_id, shard.row_start, shard.row_stop)
    _values, counts = predict_rows(
        svc, job.job_id, model, pipeline, frame, first_row=shard.row_start,
        progress=lambda done: catalog.shard_progress(job.job_id, shard.shard, shard.attempt, done))
    summary = {"rows": len(frame)}
    if model.task != "regression":
        summary["class_counts"] = {json.dumps(k): v for k, v in counts.items()}
    if catalog.succeed_shard(job.job_id, shard.shard, shard.attempt, summary=summary):
        finalize(catalog, job.job_id)


def finalize(catalog, job_id: str) -> bool:
    """Mark a sharded job succeeded with one summary over all shards; False if it is not (or no longer) ours.

    Called by the worker whose shard was the last to succeed, and by the dispatcher for a job whose
    shards all succeeded but whose last worker died before this (idempotent: the job is only
    succeeded once, by a conditional update).
    """
    from ..errors import JobCancelled
    from .jobs import _summary

    job = catalog.get_job_row(job_id)
    if job.status != "running":
        return False
    model = catalog.get_model_row(job.model_id)
    summaries = catalog.shard_summaries(job_id)
    rows = sum(int(s.get("rows") or 0) for s in summaries)
    values: list = []
    counts: dict = {}
    if model.task == "regression":
        for batch in catalog.prediction_values(job_id):
            values.extend(v for v in batch if v is not None)
    else:
        for s in summaries:
            for k, v in (s.get("class_counts") or {}).items():
                label = json.loads(k)
                counts[label] = counts.get(label, 0) + int(v)
    summary = _summary(model.task, np.asarray(values, dtype=float) if values else values, counts, rows)
    summary["seconds"] = round(((utcnow() - job.started_at).total_seconds()) if job.started_at else 0.0, 3)
    summary["shards"] = len(summaries)
    try:
        catalog.succeed_predict(job_id, job.attempt, summary=summary)
    except JobCancelled:
        return False
    logger.info("job %s: all %s shards succeeded", job_id, len(summaries))
    return True

