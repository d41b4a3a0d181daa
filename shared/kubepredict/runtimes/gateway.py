"""The embedded gateway: OpenFaaS-compatible routes over the same neutral functions (WSGI; served by ``asgi.py``)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from werkzeug.exceptions import HTTPException
from werkzeug.middleware.shared_data import SharedDataMiddleware
from werkzeug.routing import Map, PathConverter, Rule
from werkzeug.wrappers import Request as WRequest
from werkzeug.wrappers import Response as WResponse

from .. import __version__, errors, metrics
from ..api import FUNCTIONS, protocols
from ..api.http import Headers, Request, Response
from . import responses
from .async_calls import AsyncCalls
from .edge import GRANTED, WRITE, Edge

logger = logging.getLogger(__name__)

TOPICS = {"train": "kubepredict.train.requests", "predict": "kubepredict.predict.requests"}


class AnyPath(PathConverter):
    """``<path:…>`` that also matches control characters such as a newline (Werkzeug's ``.`` does not), so
    such a path reaches its function or protocol and gets that route's answer, not the gateway's 404."""

    regex = "[^/](?s:.)*?"


def _to_wsgi(resp: Response) -> WResponse:
    return WResponse(
        resp.body if isinstance(resp.body, (bytes, bytearray)) else iter(resp.body),
        status=resp.status,
        headers=list(resp.headers.items()),
    )


class Gateway:
    """A WSGI app: ``/function/{name}``, ``/async-function/{name}``, ``/system/…``, health, metrics, ``/ui/``."""

    def __init__(self, svc, *, web_dir: Path | None = None):
        self.svc = svc
        self.settings = svc.settings
        self.invocations = {name: 0 for name in FUNCTIONS}
        self._count_lock = threading.Lock()
        self.async_calls = AsyncCalls(self.settings, self._run_async)
        self.edge = Edge(self.settings)
        get = ["GET"]  # HEAD comes with GET
        self.url_map = Map(
            [
                Rule("/healthz", endpoint="healthz", methods=get),
                Rule("/metrics", endpoint="metrics", methods=get),
                Rule("/openapi.json", endpoint="openapi", methods=get),
                Rule("/", endpoint="root", methods=get),
                Rule("/function/<name>", endpoint="function", defaults={"rest": ""}),
                Rule("/function/<name>/<path:rest>", endpoint="function"),
                Rule("/async-function/<name>", endpoint="async_function", defaults={"rest": ""}),
                Rule("/async-function/<name>/<path:rest>", endpoint="async_function"),
                Rule("/system/functions", endpoint="system_functions"),
                Rule("/system/function/<name>", endpoint="system_function"),
                # Open Inference Protocol, KServe V1 and MLflow at the root, as their clients expect.
                *[
                    Rule(path, endpoint="protocol")
                    for root in protocols.ROOTS
                    for path in (f"/{root}", f"/{root}/<path:rest>")
                ],
            ],
            strict_slashes=False,
            merge_slashes=False,  # "/function//upload" is a 404, not a redirect
            converters={"path": AnyPath},
        )
        metrics.register_catalog(svc.catalog)
        self.wsgi = self._app
        web_dir = web_dir or self.settings.web_dir or _default_web_dir()
        self._static: SharedDataMiddleware | None
        self._index: Path | None
        if web_dir and Path(web_dir).is_dir():
            self._static = SharedDataMiddleware(self._route, {"/ui": str(web_dir)}, cache=False)
            self._index = Path(web_dir) / "index.html"
        else:
            self._static = self._index = None

    def __call__(self, environ, start_response):
        return self.wsgi(environ, start_response)

    # ---- plumbing ---------------------------------------------------------------------------
    def _app(self, environ, start_response):
        scope = environ.get("asgi.scope")
        granted = scope.get(GRANTED) if scope else None
        if granted is None:  # a plain WSGI server or test client: the ASGI front's checks, here
            verdict = self.edge.check(*_edge_args(environ))
            if not isinstance(verdict, int):
                return _to_wsgi(verdict)(environ, start_response)
            granted = verdict
            cors = self.edge.cors_for(environ.get("HTTP_ORIGIN", ""))
            if cors:
                start_response = _adding(start_response, cors)
        environ[GRANTED] = granted
        if environ.get("PATH_INFO", "").startswith("/ui/") and self._static is not None:
            if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
                err = errors.MethodNotAllowed(
                    f"{environ['REQUEST_METHOD']} not allowed on the web page", details={"allowed": ["GET", "HEAD"]}
                )
                return _to_wsgi(responses.error_response(err))(environ, start_response)
            # a missing file falls through to _route
            return self._static(environ, _module_script_type(environ, start_response))
        return self._route(environ, start_response)

    def _route(self, environ, start_response):
        wreq = WRequest(environ)
        try:
            endpoint, values = self.url_map.bind_to_environ(environ).match()
            if "name" in values:
                values = {**values, "name": self._local_name(values["name"])}
            resp = getattr(self, f"on_{endpoint}")(wreq, **values)
        except HTTPException as exc:
            if exc.code == 404 and wreq.path == "/ui" and wreq.method in ("GET", "HEAD"):
                resp = WResponse("", status=302, headers={"Location": "/ui/"})
            elif exc.code == 404 and wreq.path == "/ui/" and self._index is not None and wreq.method in ("GET", "HEAD"):
                resp = WResponse(self._index.read_bytes(), content_type="text/html; charset=utf-8")
            elif exc.code == 405:
                err = errors.MethodNotAllowed(
                    f"{wreq.method} not allowed on {wreq.path}",
                    details={"allowed": sorted(getattr(exc, "valid_methods", None) or [])},
                )
                resp = _to_wsgi(responses.error_response(err))
            else:
                resp = _to_wsgi(
                    responses.error_response(errors.RouteNotFound(f"no route {wreq.path}", details={"path": wreq.path}))
                )
        except errors.KubepredictError as exc:
            resp = _to_wsgi(responses.error_response(exc))
        return resp(environ, start_response)

    def _request(self, wreq: WRequest, rest: str) -> Request:
        headers = Headers(wreq.headers.items())
        headers["X-Forwarded-Host"] = wreq.host
        request = Request.build(wreq.method, "/" + rest, query=wreq.args.to_dict(), headers=headers, body=wreq.stream)
        request.strict, request.can_write = True, wreq.environ.get(GRANTED) == WRITE
        return request

    def call_function(self, name: str, request: Request) -> Response:
        """``/function/{name}/…`` without a WSGI request: what the ASGI front calls for online predictions
        (after its edge checks: ``request.strict`` and ``can_write`` are the caller's to set)."""
        return self.invoke(self._local_name(name), request)

    def invoke(self, name: str, request: Request) -> Response:
        """Call a function with metrics; unknown names are a JSON 404."""
        fn = FUNCTIONS.get(name)
        if fn is None:
            return responses.error_response(
                errors.RouteNotFound(f"no function named {name!r}", details={"functions": sorted(FUNCTIONS)})
            )
        started = time.perf_counter()
        resp = responses.call(fn, request, self.svc)
        code = str(resp.status)
        metrics.INVOCATIONS.labels(name, code).inc()
        metrics.FUNCTION_SECONDS.labels(name, code).observe(time.perf_counter() - started)
        with self._count_lock:
            self.invocations[name] += 1
        return resp

    # ---- routes -----------------------------------------------------------------------------
    def health(self) -> Response:
        """``/healthz``: 200 ``OK`` once database and storage answer (the ASGI front calls it on its own thread)."""
        try:
            self.svc.catalog.ping()
            self.svc.storage.ping()
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            logger.warning("health check failed: %s", exc)
            return Response(
                503,
                ("unhealthy: " + str(exc).splitlines()[0][:200]).encode(),
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        return Response(200, b"OK", {"Content-Type": "text/plain; charset=utf-8"})

    def on_healthz(self, wreq):
        return _to_wsgi(self.health())

    def on_metrics(self, wreq):
        from prometheus_client import CONTENT_TYPE_LATEST

        return WResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    def on_openapi(self, wreq):
        """The OpenAPI 3.1 document (``api/openapi.py``), open like ``/metrics``."""
        from ..api.openapi import document

        return _to_wsgi(Response.json(document()))

    def on_root(self, wreq):
        return WResponse("", status=302, headers={"Location": "/ui/"})

    def on_function(self, wreq, name, rest):
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
        return self.invoke("predict", request)

    def on_async_function(self, wreq, name, rest):
        if wreq.method != "POST":
            raise errors.MethodNotAllowed("async invocations must use POST", details={"allowed": ["POST"]})
        if name not in FUNCTIONS:
            raise errors.RouteNotFound(f"no function named {name!r}")
        call_id = wreq.headers.get("X-Call-Id") or str(uuid.uuid4())
        self.async_calls.submit(name, self._request(wreq, rest), call_id, wreq.headers.get("X-Callback-Url"))
        return WResponse("", status=202, headers={"X-Call-Id": call_id})

    def _run_async(self, name: str, request: Request, call_id: str, callback: str | None) -> None:
        started = time.perf_counter()
        resp = responses.materialize(self.invoke(name, request))
        if callback:
            headers = {
                **resp.headers,
                "X-Call-Id": call_id,
                "X-Function-Status": str(resp.status),
                "X-Duration-Seconds": f"{time.perf_counter() - started:.6f}",
                "X-Function-Name": name,
            }
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
            annotations["topic"] = {
                "train": self.settings.topic_train_requests,
                "predict": self.settings.topic_predict_requests,
            }[name]
        return {
            "name": name,
            "image": f"kubepredict/{name}:{__version__}",
            "namespace": self.settings.namespace,
            "invocationCount": self.invocations[name],
            "replicas": 1,
            "availableReplicas": 1,
            "labels": labels,
            "annotations": annotations,
            "envProcess": "kubepredict serve",
        }

    def on_system_functions(self, wreq):
        if wreq.method != "GET":
            raise errors.MethodNotAllowed(
                "the embedded gateway does not deploy functions; use GET", details={"allowed": ["GET"]}
            )
        return _to_wsgi(Response.json([self._status(n) for n in FUNCTIONS]))

    def on_system_function(self, wreq, name):
        if name not in FUNCTIONS:
            raise errors.RouteNotFound(f"no function named {name!r}")
        return _to_wsgi(Response.json(self._status(name)))


def _edge_args(environ) -> tuple:
    """``Edge.check``'s arguments from a WSGI environ."""
    method = environ["REQUEST_METHOD"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = None
    return (
        method,
        environ.get("PATH_INFO", ""),
        environ.get("HTTP_HOST", ""),
        environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace"),
        environ.get("HTTP_ORIGIN", ""),
        length,
        method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ,
    )


def _adding(start_response, extra: dict):
    def start(status, headers, exc_info=None):
        return start_response(status, [*headers, *extra.items()], exc_info)

    return start


JS_TYPE = "text/javascript; charset=utf-8"


def _module_script_type(environ, start_response):
    """Serve the page's ``.js`` files as ``text/javascript`` whatever the host's mime.types says: browsers
    refuse an ES module (``<script type="module">`` and its imports) under any non-JavaScript type."""
    if not environ.get("PATH_INFO", "").endswith((".js", ".mjs")):
        return start_response

    def start(status, headers, exc_info=None):
        if status.startswith(("200", "206")):  # a file was found; a JSON 404 keeps its own type
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"] + [("Content-Type", JS_TYPE)]
        return start_response(status, headers, exc_info)

    return start


def _default_web_dir() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "web"
        if (candidate / "index.html").is_file():
            return candidate
    return None
