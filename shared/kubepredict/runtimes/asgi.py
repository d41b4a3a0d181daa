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
BODY_KEY = "kubepredict.body"  # scope key: a large request's body, read ahead (_BodyAhead)


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
        elif scope["type"] == "http" and _streamed(scope):
            body = _BodyAhead(receive)
            try:
                await self.threaded({**scope, BODY_KEY: body}, receive, send)
            finally:
                body.close()
            return
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
        body = environ["asgi.scope"].get(BODY_KEY)
        if body is not None:
            environ["wsgi.input"] = body
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


def _streamed(scope) -> bool:
    """A body worth reading ahead: chunked, or announced larger than the inline limit."""
    if scope["method"] not in ("POST", "PUT", "PATCH"):
        return False
    length = _content_length(scope)
    return length is None or length > INLINE_MAX_BYTES


class _BodyAhead:
    """The body of a large request, read ahead on the event loop and read by the worker thread directly.

    A task on the loop keeps receiving the body into a buffer of at most ``limit`` bytes while the
    thread parses what came before; the thread takes from the buffer under a lock (``wsgi.input``), with
    no round trip to the loop per message as a2wsgi's own input makes (one per 64 KiB socket read).
    """

    def __init__(self, receive, *, limit: int = 4 * 1024 * 1024):
        import asyncio
        import threading
        from collections import deque

        self._receive, self._limit = receive, limit
        self._loop = asyncio.get_running_loop()
        self._parts: deque = deque()
        self._size, self._more, self._failed = 0, True, False
        self._cond = threading.Condition()
        self._space = asyncio.Event()
        self._space.set()
        self._task = self._loop.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while self._more:
                await self._space.wait()
                message = await self._receive()
                with self._cond:
                    if message["type"] != "http.request":  # the client went away
                        self._more, self._failed = False, True
                    else:
                        body = message.get("body", b"")
                        if body:
                            self._parts.append(body)
                            self._size += len(body)
                        self._more = bool(message.get("more_body"))
                    if self._size >= self._limit:
                        self._space.clear()
                    self._cond.notify_all()
        finally:
            with self._cond:
                if self._more:  # cancelled or failed before the end
                    self._more, self._failed = False, True
                self._cond.notify_all()

    def close(self) -> None:
        """The request is over: stop reading a body nobody will consume."""
        if not self._task.done():
            self._task.cancel()

    # -- the worker thread's side: a readable binary stream ----------------------------------------
    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all of the rest when ``n`` < 0), fewer only at the end of the body."""
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(1024 * 1024), b""))
        out: list = []
        got = 0
        with self._cond:
            while got < n:
                if not self._parts:
                    if not self._more:
                        break
                    self._cond.wait()
                    continue
                part = self._parts[0]
                if got + len(part) > n:
                    k = n - got
                    out.append(part[:k])
                    self._parts[0] = part[k:]
                    got = n
                else:
                    out.append(self._parts.popleft())
                    got += len(part)
            self._size -= got
            if self._size < self._limit // 2 and not self._space.is_set():
                self._loop.call_soon_threadsafe(self._space.set)
            if not out and self._failed:
                raise OSError("the client closed the connection before the end of the request body")
        return out[0] if len(out) == 1 else b"".join(out)

    def readline(self, limit: int = -1) -> bytes:
        line = bytearray()
        while limit < 0 or len(line) < limit:
            c = self.read(1)
            if not c:
                break
            line += c
            if c == b"\n":
                break
        return bytes(line)


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
