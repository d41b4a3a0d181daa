"""The ``train`` function: queue a training job; list algorithms and models; tell the task a target implies."""

from __future__ import annotations

from .. import ml
from ..errors import UnsupportedMediaType
from ..schema import requests as q
from ..schema import responses as out
from ..services import bundles, registry, training
from .docs import Content
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


ACCEPTED = Content(
    {"application/json": out.Accepted},
    "the job is queued",
    {"Location": "the job's result URL", "Idempotent-Replayed": "true when the key was seen before"},
)
JOB_LINKS = {
    "GetJob": ("result_show", {"path.job_id": "$response.body#/job_id"}, None),
    "CancelJob": ("result_cancel", {"path.job_id": "$response.body#/job_id"}, None),
}


IDEMPOTENCY = {"Idempotency-Key": "the same key returns the same job (also a CloudEvent id, ce-id or event-id)"}


@train.route(
    "POST",
    "/",
    summary="Queue a training job",
    body=q.TrainRequest,
    headers=IDEMPOTENCY,
    responses={
        202: ACCEPTED,
        400: "invalid request, unknown column, algorithm or parameter",
        404: "unknown dataset",
        422: "the target cannot be learned (one class, not numeric)",
        429: "too many queued jobs",
    },
    links={
        **JOB_LINKS,
        "GetModel": ("train_show", {"path.model_id": "$response.body#/model_id"}, None),
        "PredictWithModel": ("predict_create", None, {"model_id": "$response.body#/model_id"}),
        "ModelReadyV2": ("get_v2_models_name_ready", {"path.name": "$response.body#/model_id"}, None),
        "InferV2": ("post_v2_models_name_infer", {"path.name": "$response.body#/model_id"}, None),
        "PredictV1": ("post_v1_models_name_predict", {"path.name": "$response.body#/model_id"}, None),
        "InvokeMLflow": ("post_models_name_invocations", {"path.name": "$response.body#/model_id"}, None),
    },
)
def create(request: Request, svc) -> Response:
    raw = request.json()
    job, created = training.submit_train(svc, unwrap_cloudevent(raw), idempotency_key=idempotency_key(request, raw))
    return accepted(job, created)


@train.route(
    "GET", "/algorithms", summary="The algorithm catalogue", query=q.AlgorithmsQuery, responses={200: out.AlgorithmList}
)
def algorithms(request: Request, svc) -> Response:
    if request.params.task == "forecasting":
        from ..ml.forecasting import list_algorithms as forecasting_algorithms

        return Response.json({"algorithms": forecasting_algorithms()})
    return Response.json({"algorithms": ml.list_algorithms(request.params.task)})


@train.route(
    "GET",
    "/task",
    summary="The task training infers for a target column",
    query=q.TaskQuery,
    responses={200: out.InferredTask, 400: "unknown column", 404: "unknown dataset"},
)
def task(request: Request, svc) -> Response:
    dataset_id, target = request.params.dataset_id, request.params.target
    return Response.json(
        {"dataset_id": dataset_id, "target": target, "task": training.inferred_task(svc, dataset_id, target)}
    )


@train.route("GET", "/", summary="List models, newest first", query=q.ModelsQuery, responses={200: out.ModelList})
def list_(request: Request, svc) -> Response:
    limit, offset = request.params.limit, request.params.offset
    items, total = svc.catalog.list_models(limit=limit, offset=offset, name=request.params.name)
    return Response.json({"models": items, "total": total, "limit": limit, "offset": offset})


BUNDLE = {"type": "string", "format": "binary", "description": "a zip: model.skops, its SHA-256, manifest.json"}
BUNDLE_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream", ""}


@train.route(
    "POST",
    "/import",
    summary="Import a model bundle (from GET /function/train/{model_id}/bundle) as a new version",
    query=q.ImportQuery,
    # Documented as octet-stream (what generic clients and the fuzzer send); application/zip is taken too.
    body=Content({"application/octet-stream": BUNDLE}, "the bundle (application/zip or application/octet-stream)"),
    responses={
        201: Content({"application/json": out.Model}, "the imported model, ready", {"Location": "the model's URL"}),
        409: "the bundle was made with another scikit-learn release (the answer names both)",
        413: "larger than KUBEPREDICT_MAX_UPLOAD_BYTES",
        415: "not a zip",
        422: "not a bundle, its artefact does not match its SHA-256, or it holds types outside the allow-list",
    },
)
def import_(request: Request, svc) -> Response:
    if request.content_type not in BUNDLE_TYPES:
        raise UnsupportedMediaType(
            f"send the bundle as application/zip, not {request.content_type}",
            details={"content_type": request.content_type, "accepted": sorted(BUNDLE_TYPES - {""})},
        )
    view = bundles.import_bundle(svc, request.read(svc.settings.max_upload_bytes), name=request.params.name)
    return Response.json(view, 201, {"Location": f"/function/train/{view['model_id']}"})


@train.route(
    "GET",
    "/{model_id}/bundle",
    summary="A model as one portable, reproducible bundle (zip)",
    responses={
        200: Content({"application/zip": BUNDLE}, "the bundle", {"Content-Disposition": "attachment; its file name"}),
        404: "unknown model",
        409: "the model is not ready",
    },
)
def bundle(request: Request, svc, model_id: str) -> Response:
    filename, data = bundles.export(svc, model_id)
    return Response(
        200,
        data,
        {"Content-Type": "application/zip", "Content-Disposition": f'attachment; filename="{_ascii(filename)}"'},
    )


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


@train.route(
    "GET",
    "/{name}/aliases",
    summary="A model name's aliases (champion…) and the versions they point at",
    responses={200: out.AliasList, 404: "no model has this name"},
)
def aliases(request: Request, svc, name: str) -> Response:
    return Response.json({"name": name, "aliases": svc.catalog.aliases.list_aliases(name)})


@train.route(
    "PUT",
    "/{name}/aliases/{alias}",
    summary="Point an alias at a version of the name (promote, roll back); champion answers the bare name",
    body=q.AliasRequest,
    responses={
        200: out.Alias,
        400: "invalid alias name, or neither/both of version and model_id",
        404: "no such version of the name",
        409: "the model is of another name, or not ready",
    },
)
def set_alias(request: Request, svc, name: str, alias: str) -> Response:
    return Response.json(registry.set_alias(svc, name, alias, request.json()))


@train.route(
    "DELETE",
    "/{name}/aliases/{alias}",
    summary="Remove an alias (a bare name then means its newest ready version again)",
    responses={204: "removed", 400: "invalid alias name", 404: "no such alias"},
)
def delete_alias(request: Request, svc, name: str, alias: str) -> Response:
    svc.catalog.aliases.delete_alias(name, alias)
    return Response(204)


@train.route("GET", "/{model_id}", summary="A model: status, metrics, classes", responses={200: out.Model})
def show(request: Request, svc, model_id: str) -> Response:
    return Response.json(svc.catalog.get_model(model_id))


@train.route(
    "DELETE",
    "/{model_id}",
    summary="Delete a model and its artefact",
    responses={204: "deleted", 409: "its training job is still queued or running"},
)
def delete(request: Request, svc, model_id: str) -> Response:
    training.delete_model(svc, model_id)
    return Response(204)
