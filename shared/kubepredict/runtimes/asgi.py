"""The embedded gateway's front: an ASGI app served by uvicorn (uvloop + httptools).

Online predictions are answered on the event loop itself: decoding a small JSON body and scoring it
with the compiled model takes tens of microseconds, less than handing it to a thread would. Every
other request — uploads, train, batch predict, results, the page, metrics — goes to the same WSGI
``Gateway`` on a thread pool (a2wsgi), which streams request and response bodies in chunks.

Both paths end in the same ``Gateway`` (``call_function`` / ``call_protocol`` on the loop, its WSGI
app on the threads), so authentication, metrics and the error tables stay in one place
(``runtimes/gateway.py``); only where a request runs differs.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

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
        self.threaded = WSGIMiddleware(_input_terminated(gateway.wsgi), workers=threads)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and INLINE_PATHS.match(scope["path"]):
            length = _content_length(scope)
            if length is not None and length <= INLINE_MAX_BYTES:
                body = await _read_body(receive, length)
                if body is not None and self._quick(scope, body):
                    await self._direct(scope, body, send)
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

    async def _direct(self, scope, body: bytes, send) -> None:
        """Straight to the gateway's neutral calls: no WSGI objects on the hot path."""
        path = scope["path"]
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        headers["X-Forwarded-Host"] = headers.get("host") or ""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)[::-1])
        if path.startswith(FUNCTION_PREFIX):
            name, _, rest = path[len(FUNCTION_PREFIX):].partition("/")
            request = Request.build("POST", "/" + rest, query=query, headers=headers, body=body)
            resp = self.gateway.call_function(name, request)
        else:  # a protocol route at the root (/v2/…, /v1/…, /models/…, /invocations)
            resp = self.gateway.call_protocol(Request.build("POST", path, query=query, headers=headers, body=body))
        resp = http.materialize(resp)
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                                for k, v in resp.headers.items()]})
        await send({"type": "http.response.body", "body": resp.content()})


def _input_terminated(wsgi_app):
    """Mark the WSGI input as ending where the request body ends (a2wsgi's stream does: it reads ASGI
    messages until the last one). Without it Werkzeug reads a chunked body (no Content-Length) as empty;
    the gateway and the upload reader enforce the size limits themselves."""

    def app(environ, start_response):
        environ["wsgi.input_terminated"] = True
        return wsgi_app(environ, start_response)

    return app


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


def run(app, *, host: str, port: int, limit_concurrency: int | None = None, keep_alive: int = 75) -> None:
    """Serve ``app`` with uvicorn (uvloop + httptools) until SIGINT/SIGTERM."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="off",
                            access_log=False, log_config=None, server_header=False, date_header=False,
                            limit_concurrency=limit_concurrency, timeout_keep_alive=keep_alive,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()
