"""Read-only views of jobs: status, metrics, paginated predictions and a streamed CSV."""

from __future__ import annotations

from . import validate as v
from .csv_download import csv_stream  # noqa: F401 - the result function's CSV format


def job_with_predictions(svc, job_id: str, query: dict) -> dict:
    job = svc.catalog.get_job(job_id)
    if ("offset" in query or "limit" in query) or job["kind"] == "predict":
        limit, offset = v.page(query)
        if job["kind"] == "predict" and job["status"] == "succeeded":
            total = (job["summary"] or {}).get("rows")
            if total is None:
                total = svc.catalog.count_predictions(job_id)
            rows = []
            for r in svc.catalog.page_predictions(job_id, offset=offset, limit=limit):
                item = {"row": r.row, "prediction": r.prediction}
                if r.probabilities is not None:
                    item["probabilities"] = r.probabilities
                rows.append(item)
            job["predictions"] = {"total": total, "offset": offset, "limit": limit, "rows": rows}
    return job

