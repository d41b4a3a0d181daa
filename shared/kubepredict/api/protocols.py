"""Standard inference protocols, declared once: Open Inference Protocol (V2), KServe V1, MLflow scoring server.

Paths are relative to the ``predict`` function (``/function/predict/v2/...`` on any runtime); the
embedded gateway also mounts them at its root (``/v2/...``). Handlers only translate: codec decode →
``services.prediction.infer`` (resolve, score) → codec encode. Each protocol answers errors in its
own shape, built from the one status table in ``runtimes/responses.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from ..codecs import kserve_v1, mlflow, v2
from ..errors import KubepredictError, MethodNotAllowed, ModelNotFound, RouteNotFound, UnsupportedMediaType
from ..schema import requests as q
from ..schema import responses as out
from ..services import prediction, serving
from .docs import Content, RouteDoc
from .http import DEFAULT_MAX_JSON, Request, Response

ROOTS = ("v2", "v1", "models", "invocations", "ping", "health", "version")


# ---- error shapes ----------------------------------------------------------------------------
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "INVALID_STATE",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


def _error_body(dialect: str, status: int, message: str) -> dict:
    if dialect == "mlflow":
        return {"error_code": MLFLOW_CODES.get(status, "BAD_REQUEST"), "message": message}
    return {"error": message}  # V2 and KServe V1


def error_response(path: str, exc: Exception) -> Response:
    """``exc`` as the protocol owning ``path`` says errors look; statuses from the one table."""
    from ..runtimes.responses import error_response as native  # runtimes import api, not the other way at load time

    answer = native(exc)
    body = answer.body if isinstance(answer.body, bytes) else b"".join(answer.body)
    message = json.loads(body)["error"]["message"]
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-type"}
    return Response.json(_error_body(dialect(path), answer.status, message), answer.status, headers)


def dialect(path: str) -> str:
    first = path.strip("/").split("/", 1)[0]
    return {"v2": "v2", "v1": "v1"}.get(first, "mlflow")


# ---- routing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    method: str
    parts: tuple[str, ...]
    handler: Callable[..., Response]
    public: bool  # health checks: no bearer token, even when KUBEPREDICT_API_TOKEN is set
    doc: RouteDoc = RouteDoc()

    @property
    def pattern(self) -> str:
        return "/" + "/".join(self.parts)


ROUTES: list[Route] = []
TEXT = Content({"text/plain": {"type": "string"}})


def route(method: str, pattern: str, *, public: bool = False, **doc):
    """Register a protocol route; ``doc`` holds RouteDoc fields (summary, body, responses, tags, path)."""

    def register(fn):
        ROUTES.append(
            Route(method, tuple(p for p in pattern.split("/") if p), fn, public, RouteDoc(public=public, **doc))
        )
        return fn

    return register


def model_route(method: str, suffix: str, *, summary: str, version_summary: str, **doc):
    """Register a V2 model route twice: ``/v2/models/{name}{suffix}`` (the name's current version) and
    ``/v2/models/{name}/versions/{version}{suffix}``. ``doc["responses"]`` serves both, except that the
    versioned route's 404 also names the version (``version_404``, when given)."""
    version_404 = doc.pop("version_404", None)
    versioned = dict(doc)
    if version_404:
        versioned["responses"] = {**doc["responses"], 404: version_404}

    def register(fn):
        route(method, f"/v2/models/{{name}}/versions/{{version}}{suffix}", summary=version_summary, **versioned)(fn)
        return route(method, f"/v2/models/{{name}}{suffix}", summary=summary, **doc)(fn)

    return register


def owns(path: str) -> bool:
    return path.strip("/").split("/", 1)[0] in ROOTS


def match(request: Request) -> tuple[Route, list[str]]:
    parts = [p for p in request.path.split("/") if p]
    wanted = "GET" if request.method == "HEAD" else request.method
    allowed = []
    for r in ROUTES:
        if len(r.parts) != len(parts):
            continue
        args = []
        for p, s in zip(r.parts, parts, strict=True):
            if p.startswith("{"):
                args.append(s)
            elif p != s:
                break
        else:
            if r.method == wanted:
                return r, args
            allowed.append(r.method)
    if allowed:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}", details={"allowed": sorted(set(allowed))}
        )
    raise RouteNotFound(f"no route {request.path}", details={"path": request.path})


def is_public(request: Request) -> bool:
    try:
        return match(request)[0].public
    except KubepredictError:
        return False


def dispatch(request: Request, svc) -> Response | None:
    """The protocol answer for ``request``, or None when its path is not a protocol's."""
    if not owns(request.path):
        return None
    try:
        r, args = match(request)
        return r.handler(request, svc, *args)
    except Exception as exc:  # noqa: BLE001 - every failure answers in the protocol's own shape
        return error_response(request.path, exc)


# ---- documentation shared by routes ---------------------------------------------------------
ERRORS = {
    400: "invalid body or rows",
    404: "unknown model",
    409: "model not ready",
    413: "body or rows over the limit",
    415: "unsupported content type or encoding",
}
INFER_RESPONSES = {200: out.V2InferResponse, **ERRORS}
MLFLOW_BODY = Content(
    {
        "application/json": q.MLflowRequest,
        "text/csv": {"type": "string", "description": "a header row, one line per row"},
    }
)
PING = {200: TEXT, 404: "unknown model", 409: "model not ready"}


# ---- Open Inference Protocol (V2) ------------------------------------------------------------
@route(
    "GET",
    "/v2",
    public=True,
    summary="Server metadata",
    tags=("Open Inference Protocol (V2)",),
    responses={200: out.V2Server},
)
def v2_server(request, svc):
    return Response.json({"name": "kubepredict", "version": __version__, "extensions": ["binary_tensor_data"]})


@route(
    "GET",
    "/v2/health/live",
    public=True,
    summary="Liveness",
    tags=("Open Inference Protocol (V2)",),
    responses={200: out.V2Live},
)
def v2_live(request, svc):
    return Response.json({"live": True})


@route(
    "GET",
    "/v2/health/ready",
    public=True,
    summary="Readiness: database and storage answer",
    tags=("Open Inference Protocol (V2)",),
    responses={200: out.V2Ready, 503: "database or storage unavailable"},
)
def v2_ready(request, svc):
    svc.catalog.ping()
    svc.storage.ping()
    return Response.json({"ready": True})


@model_route(
    "GET",
    "",
    summary="Model metadata (latest version)",
    version_summary="Model metadata",
    tags=("Open Inference Protocol (V2)",),
    responses={200: out.V2Metadata, 404: "unknown model", 409: "not ready"},
    version_404="unknown model or version",
)
def v2_metadata(request, svc, name, version=None):
    return Response.json(v2.metadata(serving.resolve(svc, name, version)))


@model_route(
    "GET",
    "/ready",
    summary="Model readiness",
    version_summary="Model version readiness",
    tags=("Open Inference Protocol (V2)",),
    responses={200: out.V2ModelReady, 404: "unknown model", 409: "not ready"},
    version_404="unknown model or version",
)
def v2_model_ready(request, svc, name, version=None):
    model = serving.resolve(svc, name, version)  # unknown: 404; training or failed: 409 (not ready)
    return Response.json({"name": model.name, "ready": True})


@model_route(
    "POST",
    "/infer",
    summary="Inference (JSON tensors or Triton binary)",
    version_summary="Inference on a version",
    tags=("Open Inference Protocol (V2)",),
    body=q.V2InferRequest,
    responses=INFER_RESPONSES,
)
def v2_infer(request, svc, name, version=None):
    _identity_encoding(request)
    if request.content_type and request.content_type != "application/octet-stream":
        request.require_json()  # no type at all is what Triton's client sends with binary tensors
    body = v2.parse(request.read(DEFAULT_MAX_JSON), request.headers.get("inference-header-content-length"))
    return Response.json(prediction.infer(svc, v2, body, name, version))


# ---- KServe V1 -------------------------------------------------------------------------------
@route(
    "GET",
    "/v1/models/{name}",
    summary="Model status",
    tags=("KServe V1",),
    responses={200: out.V1Model, 404: "unknown model", 409: "not ready"},
)
def v1_model(request, svc, name):
    return Response.json(kserve_v1.metadata(serving.resolve(svc, name)))


@route(
    "POST",
    "/v1/models/{target}",
    summary="Predict",
    tags=("KServe V1",),
    path="/v1/models/{name}:predict",
    body=q.KServeV1Request,
    responses={200: out.Predictions, **ERRORS},
)
def v1_predict(request, svc, target):
    name, _, verb = target.rpartition(":")
    if verb != "predict" or not name:
        raise RouteNotFound(
            f"no route {request.path}; V1 serves POST /v1/models/{{name}}:predict", details={"path": request.path}
        )
    return Response.json(prediction.infer(svc, kserve_v1, request.json(), name))


# ---- MLflow scoring server -------------------------------------------------------------------
@route(
    "POST",
    "/invocations",
    summary="Score with the default model (KUBEPREDICT_DEFAULT_MODEL)",
    tags=("MLflow",),
    body=MLFLOW_BODY,
    responses={200: out.Predictions, **ERRORS},
)
def mlflow_default_invocations(request, svc):
    return mlflow_invocations(request, svc, _default_model(svc))


@route(
    "POST",
    "/models/{name}/invocations",
    summary="Score",
    tags=("MLflow",),
    body=MLFLOW_BODY,
    responses={200: out.Predictions, **ERRORS},
)
def mlflow_invocations(request, svc, name):
    if request.content_type == "text/csv":
        data = request.read(DEFAULT_MAX_JSON)
        return Response.json(prediction.infer(svc, mlflow, None, name, decode=lambda m: mlflow.decode_csv(data, m)))
    if not request.is_json():
        raise UnsupportedMediaType(
            f"this endpoint takes application/json or text/csv, not "
            f"{request.content_type or 'a body without a Content-Type'}",
            details={"content_type": request.content_type},
        )
    return Response.json(prediction.infer(svc, mlflow, request.json(), name))


@route("GET", "/ping", public=True, summary="Health", tags=("MLflow",), responses=PING)
@route("GET", "/health", public=True, summary="Health", tags=("MLflow",), responses=PING)
def mlflow_ping(request, svc):
    if svc.settings.default_model:
        serving.resolve(svc, svc.settings.default_model)
    return Response(200, b"\n", {"Content-Type": "text/plain"})


@route("GET", "/models/{name}/ping", summary="Model health", tags=("MLflow",), responses=PING)
@route("GET", "/models/{name}/health", summary="Model health", tags=("MLflow",), responses=PING)
def mlflow_model_ping(request, svc, name):
    serving.resolve(svc, name)
    return Response(200, b"\n", {"Content-Type": "text/plain"})


@route("GET", "/version", public=True, summary="Server version", tags=("MLflow",), responses={200: TEXT})
@route("GET", "/models/{name}/version", summary="Server version", tags=("MLflow",), responses={200: TEXT})
def mlflow_version(request, svc, name=None):
    return Response(200, __version__.encode(), {"Content-Type": "text/plain"})


def _default_model(svc) -> str:
    if not svc.settings.default_model:
        raise ModelNotFound(
            "no default model: set KUBEPREDICT_DEFAULT_MODEL to a model id or name, "
            "or POST to /models/{name}/invocations",
            code="no_default_model",
        )
    return svc.settings.default_model


def _identity_encoding(request: Request) -> None:
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding} is not supported; send the body uncompressed",
            details={"content_encoding": encoding},
        )


# (method, path) of every public route (health checks, server metadata): none has a parameter, so the
# embedded gateway's edge looks them up in a set before reading a request (runtimes/edge.py).
PUBLIC = frozenset((r.method, "/" + "/".join(r.parts)) for r in ROUTES if r.public)
