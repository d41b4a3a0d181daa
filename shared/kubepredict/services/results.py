"""Read-only views of jobs: status, metrics, paginated predictions and a streamed CSV."""

from __future__ import annotations

from .csv_download import csv_stream  # noqa: F401 - the result function's CSV format


def job_with_predictions(svc, job_id: str, *, limit: int = 100, offset: int = 0) -> dict:
    """The job; a finished prediction job with one page of its predictions."""
    job = svc.catalog.get_job(job_id)
    if job["kind"] == "predict" and job["status"] == "succeeded":
        total = (job["summary"] or {}).get("rows")
        if total is None:
            total = svc.catalog.count_predictions(job_id)
        if "forecast" in (job["summary"] or {}):
            from .forecast_jobs import page

            rows = page(svc, job_id, offset=offset, limit=limit)
            job["predictions"] = {"total": total, "offset": offset, "limit": limit, "rows": rows}
            return job
        rows = []
        for r in svc.catalog.page_predictions(job_id, offset=offset, limit=limit):
            item = {"row": r.row, "prediction": r.prediction}
            if r.probabilities is not None:
                item["probabilities"] = r.probabilities
            rows.append(item)
        job["predictions"] = {"total": total, "offset": offset, "limit": limit, "rows": rows}
    return job
