"""The ``result`` function: job status, metrics, paginated predictions, CSV download, cancel."""

from __future__ import annotations

from ..errors import InvalidInput
from ..services import results, validate
from .http import Function, Request, Response

result = Function("result")
KINDS, STATUSES = ("train", "predict"), ("queued", "running", "succeeded", "failed", "cancelled")


@result.route("GET", "/")
def list_(request: Request, svc) -> Response:
    kind, status = request.query.get("kind") or None, request.query.get("status") or None
    if kind not in (None, *KINDS) or status not in (None, *STATUSES):
        raise InvalidInput(f"kind must be one of {KINDS}, status one of {STATUSES}", code="invalid_query")
    limit, offset = validate.page(request.query)
    items, total = svc.catalog.list_jobs(kind=kind, status=status, limit=limit, offset=offset)
    return Response.json({"jobs": items, "total": total, "limit": limit, "offset": offset})


@result.route("GET", "/{job_id}")
def show(request: Request, svc, job_id: str) -> Response:
    fmt = request.query.get("format") or "json"
    if fmt == "csv":
        body = results.csv_stream(svc, job_id)
        return Response(200, body, {"Content-Type": "text/csv; charset=utf-8",
                                    "Content-Disposition": f'attachment; filename="{job_id}.csv"'})
    if fmt != "json":
        raise InvalidInput("format must be json or csv", code="invalid_query", details={"param": "format"})
    return Response.json(results.job_with_predictions(svc, job_id, request.query))


@result.route("DELETE", "/{job_id}")
def cancel(request: Request, svc, job_id: str) -> Response:
    return Response.json(svc.catalog.cancel(job_id), 202)
