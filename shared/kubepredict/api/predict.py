"""The ``predict`` function: batch jobs over a dataset, or online answers for a few rows."""

from __future__ import annotations

from ..services import prediction, validate
from .http import Function, Request, Response, idempotency_key, unwrap_cloudevent
from .train import accepted

predict = Function("predict")
QUICK_MAX_BYTES = 256 * 1024


def _quick(method: str, path: str, body: bytes) -> bool:
    """Online scoring of a small body (no dataset named: a batch job would write to the database)."""
    return method == "POST" and len(body) <= QUICK_MAX_BYTES and b'"dataset_id"' not in body


predict.quick = _quick


@predict.route("POST", "/")
def create(request: Request, svc) -> Response:
    raw = request.json()
    body = validate.require_object(unwrap_cloudevent(raw))
    if any(k in body for k in prediction.ONLINE_KEYS):
        return Response.json(prediction.predict_online(svc, body))
    job, created = prediction.submit_predict(svc, body, idempotency_key=idempotency_key(request, raw))
    return accepted(job, created)


@predict.route("GET", "/")
def list_(request: Request, svc) -> Response:
    limit, offset = validate.page(request.query)
    items, total = svc.catalog.list_jobs(kind="predict", status=request.query.get("status") or None,
                                         limit=limit, offset=offset)
    for j in items:
        j.pop("request", None)
    return Response.json({"jobs": items, "total": total, "limit": limit, "offset": offset})
