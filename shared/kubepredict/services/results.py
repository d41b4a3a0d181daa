"""Read-only views of jobs: status, metrics, paginated predictions and a streamed CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Iterator

from ..errors import Conflict, NotFound
from . import validate as v


def job_with_predictions(svc, job_id: str, query: dict) -> dict:
    job = svc.catalog.get_job(job_id)
    job.pop("request", None)
    if ("offset" in query or "limit" in query) or job["kind"] == "predict":
        limit, offset = v.page(query)
        if job["kind"] == "predict" and job["status"] == "succeeded":
            total = (job["summary"] or {}).get("rows")
            if total is None:
                total = svc.catalog.count_predictions(job_id)
            rows = []
            for r in svc.catalog.page_predictions(job_id, offset=offset, limit=limit):
                item = {"row": r.row, "prediction": json.loads(r.prediction)}
                if r.probabilities is not None:
                    item["probabilities"] = json.loads(r.probabilities)
                rows.append(item)
            job["predictions"] = {"total": total, "offset": offset, "limit": limit, "rows": rows}
    return job


def csv_stream(svc, job_id: str) -> Iterator[bytes]:
    """The input rows joined with their predictions, as CSV chunks (never all in memory)."""
    import pyarrow.parquet as pq

    job = svc.catalog.get_job(job_id)
    if job["kind"] != "predict":
        raise Conflict("CSV results exist for prediction jobs only", code="not_a_prediction_job")
    if job["status"] != "succeeded":
        raise Conflict(f"job {job_id} is {job['status']}; results are available once it succeeded",
                       code="job_not_finished", details={"status": job["status"]})
    try:
        dataset = svc.catalog.get_dataset_row(job["dataset_id"])
    except NotFound as exc:
        raise NotFound(f"the input dataset {job['dataset_id']} was deleted; use the paginated JSON results",
                       code="dataset_not_found") from exc
    classes = (svc.catalog.get_model(job["model_id"]).get("classes")) or []
    fobj = svc.storage.open(dataset.parquet_key)
    batches = pq.ParquetFile(fobj).iter_batches(batch_size=10_000)
    preds = svc.catalog.iter_predictions(job_id, batch=10_000)

    def generate() -> Iterator[bytes]:
        try:
            buf = io.StringIO()
            writer = csv.writer(buf)
            first = True
            pending: list = []
            for batch in batches:
                frame = batch.to_pandas()
                if first:
                    writer.writerow(list(frame.columns) + ["prediction"] + [f"probability_{c}" for c in classes])
                    first = False
                for values in frame.itertuples(index=False, name=None):
                    if not pending:
                        pending = list(next(preds, []))
                        pending.reverse()
                    p = pending.pop() if pending else None
                    extra = [json.loads(p.prediction) if p else ""]
                    if classes:
                        extra += json.loads(p.probabilities) if p and p.probabilities else [""] * len(classes)
                    writer.writerow(["" if _missing(x) else x for x in values] + extra)
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
        finally:
            fobj.close()

    return generate()


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and x != x)
