"""Putting jobs on the queue: the queue-length check every submit makes, and a train job queued with its
model row (one transaction, with its event), for both kinds of training (``training``, ``forecast_jobs``)."""

from __future__ import annotations

from ..errors import TooManyJobs


def check_queue(svc) -> None:
    """429 when ``KUBEPREDICT_MAX_QUEUED_JOBS`` jobs are already waiting."""
    queued = svc.catalog.count_jobs(status="queued")
    if queued >= svc.settings.max_queued_jobs:
        raise TooManyJobs(
            f"{queued} jobs are already queued (limit {svc.settings.max_queued_jobs}); retry later",
            details={"queued": queued},
        )


def enqueue_train(svc, model: dict, request: dict, idempotency_key: str | None) -> tuple[dict, bool]:
    """Queue the train job of ``model`` (its row, as the catalogue stores it) running ``request``;
    returns ``(job, created)`` (an idempotency key seen before gives the first job back)."""
    job = {
        "job_id": model["job_id"],
        "kind": "train",
        "model_id": model["model_id"],
        "dataset_id": model["dataset_id"],
        "max_attempts": svc.settings.job_max_attempts,
        "request": request,
    }
    queued = svc.catalog.enqueue(
        job=job, model=model, idempotency=("train", idempotency_key) if idempotency_key else None
    )
    svc.job_queued()
    return queued
