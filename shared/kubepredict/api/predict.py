"""The ``predict`` function: batch jobs over a dataset, online answers for a few rows, and the standard
inference protocols (``/v2/...``, ``/v1/...``, MLflow's ``/invocations``; see ``api/protocols.py``)."""

from __future__ import annotations

from ..codecs import native
from ..errors import Forbidden
from ..schema import parse
from ..schema import requests as q
from ..schema import responses as out
from ..services import prediction
from . import protocols
from .docs import Content
from .http import Function, Request, Response, idempotency_key, unwrap_cloudevent
from .train import ACCEPTED, IDEMPOTENCY, JOB_LINKS, accepted


class PredictFunction(Function):
    """``predict``'s own routes, with the protocol routes tried first (they answer in their own shapes)."""

    def __call__(self, request: Request, svc) -> Response:
        answer = protocols.dispatch(request, svc)  # None: not a protocol's path
        return answer if answer is not None else super().__call__(request, svc)


predict = PredictFunction("predict")
QUICK_MAX_BYTES = 256 * 1024


def _quick(method: str, path: str, body: bytes) -> bool:
    """Online scoring of a small body (no dataset named: a batch job would write to the database; no
    explanation asked for: that takes up to seconds, and would hold the event loop). A forecast (``/forecast``:
    recursive steps, the history's validation) runs on a thread like other work."""
    return (
        method == "POST"
        and len(body) <= QUICK_MAX_BYTES
        and b'"dataset_id"' not in body
        and b'"explain"' not in body
        and not path.rstrip("/").endswith("/forecast")
    )


predict.quick = _quick


@predict.route(
    "POST",
    "/",
    summary="Predict: rows answered at once, or a dataset scored by a batch job",
    body=Content({"application/json": {"anyOf": [q.OnlinePredictRequest, q.BatchPredictRequest]}}),
    responses={
        200: Content({"application/json": out.OnlinePrediction}, "online predictions"),
        202: ACCEPTED,
        400: "invalid request or rows; columns missing",
        404: "unknown model or dataset",
        409: "the model is not ready",
        413: "more rows than KUBEPREDICT_MAX_ONLINE_ROWS",
        429: "too many queued jobs",
    },
    headers=IDEMPOTENCY,
    links=JOB_LINKS,
)
def create(request: Request, svc) -> Response:
    raw = request.json()
    body = parse.require_object(unwrap_cloudevent(raw))
    if native.is_online(body):
        return Response.json(prediction.predict_online(svc, body))
    if not request.can_write:
        raise Forbidden(
            "this token may predict online only; a batch prediction over a dataset queues a job "
            "and needs the API token",
            code="read_only_token",
        )
    job, created = prediction.submit_predict(svc, body, idempotency_key=idempotency_key(request, raw))
    return accepted(job, created)


@predict.route(
    "POST",
    "/forecast",
    summary="Forecast: a forecasting model's next steps per series, answered at once",
    body=q.ForecastRequest,
    responses={
        200: Content({"application/json": out.Forecast}, "per series, horizon rows with their interval"),
        400: "invalid request or history; a model that is not a forecaster",
        404: "unknown model",
        409: "the model is not ready",
    },
)
def forecast(request: Request, svc) -> Response:
    return Response.json(prediction.forecast_online(svc, parse.require_object(request.json())))


@predict.route("GET", "/", summary="List prediction jobs", query=q.PredictJobsQuery, responses={200: out.JobList})
def list_(request: Request, svc) -> Response:
    limit, offset = request.params.limit, request.params.offset
    items, total = svc.catalog.list_jobs(kind="predict", status=request.params.status, limit=limit, offset=offset)
    return Response.json({"jobs": items, "total": total, "limit": limit, "offset": offset})
