"""The embedded gateway's front: an ASGI app served by uvicorn (uvloop + httptools).

Online predictions are answered on the event loop itself: decoding a small JSON body and scoring it
with the compiled model takes tens of microseconds, less than handing it to a thread would. Every
other request — uploads, train, batch predict, results, the page, metrics — goes to the same WSGI
``Gateway`` on a thread pool (a2wsgi), which streams request and response bodies in chunks.

Both paths run the same WSGI application, so routing, authentication, size limits, metrics and the
JSON error table stay in one place (``runtimes/gateway.py``); only where a request runs differs.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from typing import Any, Callable

from urllib.parse import parse_qsl

from .. import errors
from ..api import FUNCTIONS
from ..api.http import Headers, Request
from . import http

logger = logging.getLogger(__name__)

# Requests that may score rows online; a function's own ``quick`` predicate then decides on the body
# (api/predict.py: small, and naming no dataset — a batch job to queue is a database write).
INLINE_PATHS = re.compile(
    r"^(?:/function/predict/?"
    r"|(?:/function/predict)?/v2/models/[^/]+(?:/versions/[^/]+)?/infer"
    r"|(?:/function/predict)?/v1/models/[^/]+:predict"
    r"|(?:/function/predict)?/models/[^/]+/invocations"
    r"|(?:/function/predict)?/invocations)$")
INLINE_MAX_BYTES = 256 * 1024
FUNCTION_PREFIX = "/function/"


class AsgiGateway:
    """ASGI app over a WSGI gateway: hot online paths inline, the rest on ``threads`` worker threads."""

    def __init__(self, gateway, *, threads: int = 16):
        from a2wsgi import WSGIMiddleware

        self.gateway = gateway
        self.wsgi_app = wsgi_app = gateway.wsgi
        self.threaded = WSGIMiddleware(wsgi_app, workers=threads)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and INLINE_PATHS.match(scope["path"]):
            length = _content_length(scope)
            if length is not None and length <= INLINE_MAX_BYTES:
                body = await _read_body(receive, length)
                if body is not None and self._quick(scope, body):
                    if scope["path"].startswith(FUNCTION_PREFIX):
                        await self._function(scope, body, send)
                    else:
                        await self._inline(scope, body, send)
                    return
                receive = _replay(body or b"", receive)
        await self.threaded(scope, receive, send)

    def _quick(self, scope, body: bytes) -> bool:
        path = scope["path"]
        if path.startswith(FUNCTION_PREFIX):
            name, _, rest = path[len(FUNCTION_PREFIX):].partition("/")
            fn = FUNCTIONS.get(self.gateway._local_name(name))
            return fn is not None and fn.is_quick("POST", "/" + rest, body)
        return FUNCTIONS["predict"].is_quick("POST", path, body)

    async def _function(self, scope, body: bytes, send) -> None:
        """``/function/{name}/…`` straight to the gateway's neutral call: no WSGI objects on the hot path."""
        name, _, rest = scope["path"][len(FUNCTION_PREFIX):].partition("/")
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        headers["X-Forwarded-Host"] = headers.get("host") or ""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)[::-1])
        request = Request.build("POST", "/" + rest, query=query, headers=headers, body=body)
        resp = http.materialize(self.gateway.call_function(name, request))
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                                for k, v in resp.headers.items()]})
        await send({"type": "http.response.body", "body": resp.content()})

    async def _inline(self, scope, body: bytes, send) -> None:
        environ = _environ(scope, body)
        started: dict[str, Any] = {}

        def start_response(status, headers, exc_info=None):
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            return lambda data: None

        try:
            chunks = self.wsgi_app(environ, start_response)
            try:
                payload = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
        except Exception as exc:  # noqa: BLE001 - the edge: nothing escapes as a traceback
            resp = http.error_response(exc if isinstance(exc, errors.KubepredictError) else exc)
            started = {"status": resp.status,
                       "headers": [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()]}
            payload = resp.content()
        await send({"type": "http.response.start", "status": started["status"], "headers": started["headers"]})
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
        if key == b"transfer-encoding":
            return None
    return 0


async def _read_body(receive, length: int) -> bytes | None:
    """The whole body (at most ``length`` bytes were announced); None if the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > length or not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that first hands back the body already read, then the rest of the stream."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def _environ(scope, body: bytes) -> dict:
    server = scope.get("server") or ("127.0.0.1", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf8").decode("latin1"),
        "PATH_INFO": scope["path"].encode("utf8").decode("latin1"),
        "QUERY_STRING": scope["query_string"].decode("latin1"),
        "SERVER_NAME": server[0], "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0], "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for key, value in scope["headers"]:
        name = key.decode("latin1").upper().replace("-", "_")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value.decode("latin1")
            continue
        if name == "CONTENT_LENGTH":
            continue
        name = "HTTP_" + name
        value = value.decode("latin1")
        environ[name] = f"{environ[name]},{value}" if name in environ else value
    return environ


def run(app, *, host: str, port: int, limit_concurrency: int | None = None, keep_alive: int = 75) -> None:
    """Serve ``app`` with uvicorn (uvloop + httptools) until SIGINT/SIGTERM."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="off",
                            access_log=False, log_config=None, server_header=False, date_header=False,
                            limit_concurrency=limit_concurrency, timeout_keep_alive=keep_alive,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()
