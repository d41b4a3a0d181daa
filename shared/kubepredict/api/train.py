"""The ``train`` function: queue a training job; list algorithms and models; tell the task a target implies."""

from __future__ import annotations

from .. import ml
from ..services import training, validate
from .http import Function, Request, Response, idempotency_key, unwrap_cloudevent

train = Function("train")


def accepted(job: dict, created: bool) -> Response:
    body = {"job_id": job["job_id"], "status": job["status"]}
    if job.get("model_id"):
        body["model_id"] = job["model_id"]
    headers = {"Location": f"/function/result/{job['job_id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return Response.json(body, 202, headers)


@train.route("POST", "/")
def create(request: Request, svc) -> Response:
    raw = request.json()
    job, created = training.submit_train(svc, unwrap_cloudevent(raw), idempotency_key=idempotency_key(request, raw))
    return accepted(job, created)


@train.route("GET", "/algorithms")
def algorithms(request: Request, svc) -> Response:
    return Response.json({"algorithms": ml.list_algorithms(request.query.get("task") or None)})


@train.route("GET", "/task")
def task(request: Request, svc) -> Response:
    dataset_id = validate.string(request.query, "dataset_id", required=True, max_len=40)
    target = validate.string(request.query, "target", required=True)
    return Response.json({"dataset_id": dataset_id, "target": target,
                          "task": training.inferred_task(svc, dataset_id, target)})


@train.route("GET", "/")
def list_(request: Request, svc) -> Response:
    limit, offset = validate.page(request.query)
    items, total = svc.catalog.list_models(limit=limit, offset=offset, name=request.query.get("name") or None)
    return Response.json({"models": items, "total": total, "limit": limit, "offset": offset})


@train.route("GET", "/{model_id}")
def show(request: Request, svc, model_id: str) -> Response:
    return Response.json(svc.catalog.get_model(model_id))


@train.route("DELETE", "/{model_id}")
def delete(request: Request, svc, model_id: str) -> Response:
    training.delete_model(svc, model_id)
    return Response(204)
