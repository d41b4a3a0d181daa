"""The ``result`` function: job status, metrics, paginated predictions, CSV download, cancel."""

from __future__ import annotations

from ..schema import requests as q
from ..schema import responses as out
from ..services import results
from .docs import Content
from .http import Function, Request, Response

result = Function("result")


@result.route("GET", "/", summary="List jobs, newest first", query=q.JobsQuery, responses={200: out.JobList})
def list_(request: Request, svc) -> Response:
    p = request.params
    items, total = svc.catalog.list_jobs(kind=p.kind, status=p.status, limit=p.limit, offset=p.offset)
    return Response.json({"jobs": items, "total": total, "limit": p.limit, "offset": p.offset})


@result.route(
    "GET",
    "/{job_id}",
    summary="A job: status, metrics, paginated predictions or a CSV",
    query=q.ResultQuery,
    responses={
        200: Content(
            {"application/json": out.Job, "text/csv": {"type": "string"}},
            "the job (json) or its input rows joined with predictions (csv)",
        ),
        409: "csv of a job that is not a finished prediction job",
    },
)
def show(request: Request, svc, job_id: str) -> Response:
    if request.params.format == "csv":
        body = results.csv_stream(svc, job_id)
        return Response(
            200,
            body,
            {"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{job_id}.csv"'},
        )
    return Response.json(
        results.job_with_predictions(svc, job_id, limit=request.params.limit, offset=request.params.offset)
    )


@result.route(
    "DELETE",
    "/{job_id}",
    summary="Cancel a queued or running job",
    responses={202: out.Job, 409: "the job has finished"},
)
def cancel(request: Request, svc, job_id: str) -> Response:
    return Response.json(svc.catalog.cancel(job_id), 202)
