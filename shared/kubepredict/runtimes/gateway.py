"""The embedded gateway: OpenFaaS-compatible routes over the same neutral functions (WSGI; served by ``asgi.py``)."""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from pathlib import Path

from werkzeug.exceptions import HTTPException
from werkzeug.middleware.shared_data import SharedDataMiddleware
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request as WRequest
from werkzeug.wrappers import Response as WResponse

from .. import __version__, errors, metrics
from ..api import FUNCTIONS, protocols
from ..api.http import Headers, Request, Response
from . import http
from .async_calls import AsyncCalls

logger = logging.getLogger(__name__)

TOPICS = {"train": "kubepredict.train.requests", "predict": "kubepredict.predict.requests"}


def _to_wsgi(resp: Response) -> WResponse:
    return WResponse(resp.body if isinstance(resp.body, (bytes, bytearray)) else iter(resp.body),
                     status=resp.status, headers=list(resp.headers.items()))


class Gateway:
    """A WSGI app: ``/function/{name}``, ``/async-function/{name}``, ``/system/…``, health, metrics, ``/ui/``."""

    def __init__(self, services, *, web_dir: Path | None = None):
        self.services = services
        self.settings = services.settings
        self.invocations = {name: 0 for name in FUNCTIONS}
        self._count_lock = threading.Lock()
        self.async_calls = AsyncCalls(self.settings, self._run_async)
        self.url_map = Map([
            Rule("/healthz", endpoint="healthz"),
            Rule("/metrics", endpoint="metrics"),
            Rule("/", endpoint="root"),
            Rule("/function/<name>", endpoint="function", defaults={"rest": ""}),
            Rule("/function/<name>/<path:rest>", endpoint="function"),
            Rule("/async-function/<name>", endpoint="async_function", defaults={"rest": ""}),
            Rule("/async-function/<name>/<path:rest>", endpoint="async_function"),
            Rule("/system/functions", endpoint="system_functions"),
            Rule("/system/function/<name>", endpoint="system_function"),
            # Open Inference Protocol, KServe V1 and MLflow at the root, as their clients expect.
            *[Rule(path, endpoint="protocol") for root in protocols.ROOTS
              for path in (f"/{root}", f"/{root}/<path:rest>")],
        ], strict_slashes=False)
        metrics.register_catalog(services.catalog)
        self.wsgi = self._app
        web_dir = web_dir or self.settings.web_dir or _default_web_dir()
        if web_dir and Path(web_dir).is_dir():
            self.wsgi = SharedDataMiddleware(self._app, {"/ui": str(web_dir)}, cache=False)
            self._index = Path(web_dir) / "index.html"
        else:
            self._index = None

    def __call__(self, environ, start_response):
        return self.wsgi(environ, start_response)

    # ---- plumbing ---------------------------------------------------------------------------
    def _app(self, environ, start_response):
        wreq = WRequest(environ)
        try:
            endpoint, values = self.url_map.bind_to_environ(environ).match()
            if "name" in values:
                values["name"] = self._local_name(values["name"])
            resp = getattr(self, f"on_{endpoint}")(wreq, **values)
        except HTTPException as exc:
            if exc.code == 404 and wreq.path == "/ui":
                resp = WResponse("", status=302, headers={"Location": "/ui/"})
            elif exc.code == 404 and wreq.path == "/ui/" and self._index is not None:
                resp = WResponse(self._index.read_bytes(), content_type="text/html; charset=utf-8")
            else:
                err = errors.RouteNotFound(f"no route {wreq.path}") if exc.code == 404 else \
                    errors.MethodNotAllowed(f"{wreq.method} not allowed on {wreq.path}")
                resp = _to_wsgi(http.error_response(err))
        except errors.KubepredictError as exc:
            resp = _to_wsgi(http.error_response(exc))
        return resp(environ, start_response)

    def _authorize(self, wreq: WRequest) -> None:
        self.authorize(wreq.headers.get("Authorization", ""))

    def authorize(self, given: str) -> None:
        """Raise Unauthorized unless ``given`` (an Authorization header) carries the API token, if one is set."""
        token = self.settings.api_token
        if not token:
            return
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), token)):
            raise errors.Unauthorized("missing or invalid bearer token (Authorization: Bearer <token>)")

    def check_length(self, length: int | None) -> None:
        limit = self.settings.max_upload_bytes + 1024 * 1024  # room for multipart framing
        if length is not None and length > limit:
            raise errors.PayloadTooLarge(f"request body of {length} bytes is larger than the limit of "
                                         f"{self.settings.max_upload_bytes} bytes",
                                         details={"limit_bytes": self.settings.max_upload_bytes})

    def _request(self, wreq: WRequest, rest: str) -> Request:
        self.check_length(wreq.content_length)
        headers = Headers(wreq.headers.items())
        headers["X-Forwarded-Host"] = wreq.host
        return Request.build(wreq.method, "/" + rest, query=wreq.args.to_dict(), headers=headers,
                             body=wreq.stream)

    def call_function(self, name: str, request: Request) -> Response:
        """``/function/{name}/…`` without a WSGI request: what the ASGI front calls for online predictions."""
        try:
            self.authorize(request.headers.get("authorization") or "")
            return self.invoke(self._local_name(name), request)
        except errors.KubepredictError as exc:
            return http.error_response(exc)

    def invoke(self, name: str, request: Request) -> Response:
        """Call a function with metrics; unknown names are a JSON 404."""
        fn = FUNCTIONS.get(name)
        if fn is None:
            return http.error_response(errors.RouteNotFound(f"no function named {name!r}",
                                                            details={"functions": sorted(FUNCTIONS)}))
        started = time.perf_counter()
        resp = http.call(fn, request, self.services)
        code = str(resp.status)
        metrics.INVOCATIONS.labels(name, code).inc()
        metrics.FUNCTION_SECONDS.labels(name, code).observe(time.perf_counter() - started)
        with self._count_lock:
            self.invocations[name] += 1
        return resp

    # ---- routes -----------------------------------------------------------------------------
    def on_healthz(self, wreq):
        try:
            self.services.catalog.ping()
            self.services.storage.ping()
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            logger.warning("health check failed: %s", exc)
            return WResponse("unhealthy: " + str(exc).splitlines()[0][:200], status=503, content_type="text/plain")
        return WResponse("OK", content_type="text/plain")

    def on_metrics(self, wreq):
        from prometheus_client import CONTENT_TYPE_LATEST

        return WResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    def on_root(self, wreq):
        return WResponse("", status=302, headers={"Location": "/ui/"})

    def on_function(self, wreq, name, rest):
        self._authorize(wreq)
        return _to_wsgi(self.invoke(name, self._request(wreq, rest)))

    def on_protocol(self, wreq, rest=""):
        """A protocol route at the root: the predict function's own answer for the same path."""
        try:
            request = self._request(wreq, wreq.path.lstrip("/"))
        except errors.KubepredictError as exc:
            return _to_wsgi(protocols.error_response(wreq.path, exc))
        return _to_wsgi(self.call_protocol(request))

    def call_protocol(self, request: Request) -> Response:
        """A protocol route at the root (``request.path`` is the full path), without a WSGI request."""
        try:
            if not protocols.is_public(request):
                self.authorize(request.headers.get("authorization") or "")
        except errors.KubepredictError as exc:
            return protocols.error_response(request.path, exc)
        return self.invoke("predict", request)

    def on_async_function(self, wreq, name, rest):
        self._authorize(wreq)
        if wreq.method != "POST":
            raise errors.MethodNotAllowed("async invocations must use POST", details={"allowed": ["POST"]})
        if name not in FUNCTIONS:
            raise errors.RouteNotFound(f"no function named {name!r}")
        call_id = wreq.headers.get("X-Call-Id") or str(uuid.uuid4())
        self.async_calls.submit(name, self._request(wreq, rest), call_id, wreq.headers.get("X-Callback-Url"))
        return WResponse("", status=202, headers={"X-Call-Id": call_id})

    def _run_async(self, name: str, request: Request, call_id: str, callback: str | None) -> None:
        started = time.perf_counter()
        resp = http.materialize(self.invoke(name, request))
        if callback:
            headers = {**resp.headers, "X-Call-Id": call_id, "X-Function-Status": str(resp.status),
                       "X-Duration-Seconds": f"{time.perf_counter() - started:.6f}", "X-Function-Name": name}
            self.async_calls.send_callback(callback, resp.content(), headers, call_id)

    def _local_name(self, name: str) -> str:
        """``upload.openfaas-fn`` (how faas-cli names a function with its namespace) → ``upload``."""
        base, _, namespace = name.partition(".")
        if namespace and namespace in (self.settings.namespace, "openfaas-fn"):
            return base
        return name

    def _status(self, name: str) -> dict:
        labels = {"com.openfaas.scale.min": "1", "app": "kubepredict"}
        annotations = {}
        if name in TOPICS:
            annotations["topic"] = {"train": self.settings.topic_train_requests,
                                    "predict": self.settings.topic_predict_requests}[name]
        return {"name": name, "image": f"kubepredict/{name}:{__version__}", "namespace": self.settings.namespace,
                "invocationCount": self.invocations[name], "replicas": 1, "availableReplicas": 1,
                "labels": labels, "annotations": annotations, "envProcess": "kubepredict serve"}

    def on_system_functions(self, wreq):
        self._authorize(wreq)
        if wreq.method != "GET":
            raise errors.MethodNotAllowed("the embedded gateway does not deploy functions; use GET",
                                          details={"allowed": ["GET"]})
        return _to_wsgi(Response.json([self._status(n) for n in FUNCTIONS]))

    def on_system_function(self, wreq, name):
        self._authorize(wreq)
        if name not in FUNCTIONS:
            raise errors.RouteNotFound(f"no function named {name!r}")
        return _to_wsgi(Response.json(self._status(name)))


def _default_web_dir() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "web"
        if (candidate / "index.html").is_file():
            return candidate
    return None
