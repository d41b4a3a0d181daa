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

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from .. import errors
from ..api import FUNCTIONS
from ..api.http import Headers, Request, Response
from . import responses
from .edge import BODY_METHODS, FRAMING_BYTES, GRANTED, WRITE

if TYPE_CHECKING:
    from .protocol import SocketBody

logger = logging.getLogger(__name__)

# Requests that may score rows online; a function's own ``quick`` predicate then decides on the body
# (api/predict.py: small, and naming no dataset — a batch job to queue is a database write).
INLINE_PATHS = re.compile(
    r"^(?:/function/predict/?"
    r"|(?:/function/predict)?/v2/models/[^/]+(?:/versions/[^/]+)?/infer"
    r"|(?:/function/predict)?/v1/models/[^/]+:predict"
    r"|(?:/function/predict)?/models/[^/]+/invocations"
    r"|(?:/function/predict)?/invocations)$"
)
INLINE_MAX_BYTES = 256 * 1024
FUNCTION_PREFIX = "/function/"
RESERVED_THREADS = 4  # worker threads never given to streamed (large) bodies
BODY_KEY = "kubepredict.body"  # scope key: a large request's body, read ahead (_BodyAhead)
#: How far a large body is read ahead of the thread parsing it. At 4 MiB (two 2 MiB parse blocks) reading
#: stopped and restarted about every block, and the sender stalled with it: a 393 MB upload went from a
#: median 241 to 277 MB/s at 16 MiB (alternating runs); 32 MiB was no faster.
BODY_AHEAD_BYTES = 16 * 1024 * 1024


class AsgiGateway:
    """ASGI app over a WSGI gateway: hot online paths inline, the rest on ``threads`` worker threads.

    Every request first passes the gateway's edge checks (``runtimes/edge.py``: Host, CORS, Origin,
    token, ``Content-Length``) on its line and headers alone, before a byte of its body is read.
    ``/healthz`` is answered from its own thread, so busy or stalled worker threads never hide it.
    """

    def __init__(self, gateway, *, threads: int = 16):
        from a2wsgi import WSGIMiddleware

        self.gateway = gateway
        self.edge = gateway.edge
        self.threaded = WSGIMiddleware(_input_terminated(gateway.wsgi), workers=threads)
        self._health_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
        self._health: tuple[float, Response | None] = (0.0, None)
        self._health_running: asyncio.Future[Response] | None = None
        # Large bodies stream into a worker thread as they arrive, holding it as long as the client takes:
        # at most this many at once, so slow uploads never take every thread from the other requests.
        self._streams = asyncio.Semaphore(max(1, threads - RESERVED_THREADS))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and there are no websockets
        try:
            await self._serve(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - the edge: a JSON 500, never uvicorn's plain text
            try:
                await _respond(send, responses.error_response(exc))
            except Exception:  # noqa: BLE001 - the response had started: uvicorn closes the connection
                pass

    async def _serve(self, scope, receive, send) -> None:
        method, path = scope["method"], scope["path"]
        host = origin = ""
        auth = b""
        length: int | None = 0
        chunked = preflight = False
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
            elif key == b"authorization":
                auth = value
            elif key == b"content-length":
                length = _int(value)
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"origin":
                origin = value.decode("latin-1")
            elif key == b"access-control-request-method":
                preflight = method == "OPTIONS"
        if chunked:
            length = None
        granted = self.edge.check(method, path, host, auth, origin, length, preflight)
        if granted.__class__ is not int:  # refused before reading the body
            await _respond(send, granted)
            return
        scope[GRANTED] = granted
        if origin:
            cors = self.edge.cors_for(origin)
            if cors:
                send = _adding(send, cors)
        if path == "/healthz" and method in ("GET", "HEAD"):
            await _respond(send, await self._healthz())
            return
        if method in BODY_METHODS and length is not None and length <= INLINE_MAX_BYTES:
            # A small body is read here, on the loop, so a slow client never holds a worker thread.
            body = await _read_body(receive, length)
            if body is None:
                return  # the client went away
            if method == "POST" and INLINE_PATHS.match(path) and self._quick(scope, body):
                await self._direct(scope, body, send, granted)
                return
            receive = _replay(body, receive)
        elif method in BODY_METHODS:
            async with self._streams:
                ahead = scope[BODY_KEY] = _BodyAhead(receive, max_bytes=self.edge.max_body)
                try:
                    await self.threaded(scope, receive, _closing_unless_read(send, ahead))
                finally:
                    ahead.close()
            return
        await self.threaded(scope, receive, send)

    async def _healthz(self) -> Response:
        """The gateway's health, from its own thread, at most once a second however often it is asked."""
        at, cached = self._health
        loop = asyncio.get_running_loop()
        if cached is not None and loop.time() - at < 1.0:
            return cached
        if self._health_running is None:
            self._health_running = loop.run_in_executor(self._health_pool, self.gateway.health)
        running = self._health_running
        try:
            resp = await asyncio.shield(running)
        finally:
            if self._health_running is running and running.done():
                self._health_running = None
        self._health = (loop.time(), resp)
        return resp

    def _quick(self, scope, body: bytes) -> bool:
        path = scope["path"]
        if path.startswith(FUNCTION_PREFIX):
            name, _, rest = path[len(FUNCTION_PREFIX) :].partition("/")
            fn = FUNCTIONS.get(self.gateway._local_name(name))
            return fn is not None and fn.is_quick("POST", "/" + rest, body)
        return FUNCTIONS["predict"].is_quick("POST", path, body)

    async def _direct(self, scope, body: bytes, send, granted: int) -> None:
        """Straight to the gateway's neutral calls: no WSGI objects on the hot path."""
        path = scope["path"]
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        headers["X-Forwarded-Host"] = headers.get("host") or ""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)[::-1])
        if path.startswith(FUNCTION_PREFIX):
            name, _, rest = path[len(FUNCTION_PREFIX) :].partition("/")
            request = Request.build("POST", "/" + rest, query=query, headers=headers, body=body)
            request.strict, request.can_write = True, granted == WRITE
            resp = self.gateway.call_function(name, request)
        else:  # a protocol route at the root (/v2/…, /v1/…, /models/…, /invocations)
            request = Request.build("POST", path, query=query, headers=headers, body=body)
            request.strict, request.can_write = True, granted == WRITE
            resp = self.gateway.call_protocol(request)
        await _respond(send, responses.materialize(resp))


async def _respond(send, resp: Response) -> None:
    body = resp.content()
    headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in resp.headers.items()]
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _adding(send, extra: dict):
    """``send`` that adds ``extra`` headers to the response's start (CORS for an allowed page)."""
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]

    async def sending(message):
        if message["type"] == "http.response.start":
            have = {k for k, _ in message.get("headers", ())}
            message = {
                **message,
                "headers": [*message.get("headers", ()), *(kv for kv in encoded if kv[0] not in have)],
            }
        await send(message)

    return sending


def _closing_unless_read(send, body: _BodyAhead):
    """``send`` that closes the connection after a response given before the whole body arrived (a refusal
    mid-upload: 413, 415, …), instead of reading and dropping the rest of a body nobody wants."""

    async def sending(message):
        if message["type"] == "http.response.start" and not body.complete:
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)

    return sending


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


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


class _BodyAhead:
    """The body of a large request, read ahead on the event loop and read by the worker thread directly.

    The connection hands each piece of the body to ``feed`` as it is parsed (``protocol.direct_body``: no
    copy into uvicorn's buffer and out again, no ``receive()`` per socket read), into a buffer of at most
    about ``limit`` bytes, while the thread parses what came before; the thread takes from the buffer
    under a lock (``wsgi.input``), with no round trip to the loop per message as a2wsgi's own input makes.
    The rest of a large Content-Length body the thread reads straight from the socket (``take_socket``:
    ``protocol.SocketBody``), into its own buffer, once what came through the loop is taken.
    Under another ASGI server, a task on the loop fills the buffer from ``receive()`` instead.
    """

    def __init__(self, receive, *, limit: int = BODY_AHEAD_BYTES, max_bytes: int | None = None):
        import asyncio
        import threading
        from collections import deque

        from .protocol import direct_body

        self._receive, self._limit = receive, limit
        self._loop = asyncio.get_running_loop()
        self._parts: deque = deque()
        self._size, self._more, self._failed = 0, True, False
        self._total, self._max, self._too_large = 0, max_bytes, False  # a chunked body, counted as it comes
        self._wanted = 0  # bytes the waiting reader needs before it is worth waking (one wake per read)
        self._cond = threading.Condition()
        self._paused = False  # feed() asked the connection to stop reading (direct)
        self._space = asyncio.Event()  # the pump's pause (through receive())
        self._space.set()
        self._task: asyncio.Task | None = None
        self._socket: SocketBody | None = None  # the rest of the body, once handed over (take_socket)
        self._direct = direct_body(receive, self)
        if self._direct is None:
            self._task = self._loop.create_task(self._pump())

    # -- the connection's side (direct): on the loop's thread ---------------------------------------
    def feed(self, body: bytes) -> bool:
        with self._cond:
            if not self._more:  # over the limit already: take no more
                return True
            self._parts.append(body)
            self._size += len(body)
            self._total += len(body)
            if self._max is not None and self._total > self._max:  # stop reading; read() says why
                self._more, self._too_large = False, True
                self._cond.notify_all()
                return True
            if self._size >= self._limit:
                self._paused = True
            if self._size >= self._wanted or self._paused:
                self._cond.notify_all()
            return self._paused

    def take_socket(self, body: SocketBody) -> None:
        with self._cond:
            self._socket = body
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            if not self._too_large:
                self._more = False
            self._cond.notify_all()

    def fail(self) -> None:
        with self._cond:
            if self._more:
                self._more, self._failed = False, True
            self._cond.notify_all()

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
                            self._total += len(body)
                        self._more = bool(message.get("more_body"))
                        if self._max is not None and self._total > self._max:  # stop reading; read() says why
                            self._more, self._too_large = False, True
                    if self._size >= self._limit:
                        self._space.clear()
                    if self._size >= self._wanted or self._size >= self._limit or not self._more:
                        self._cond.notify_all()
        finally:
            with self._cond:
                if self._more:  # cancelled or failed before the end
                    self._more, self._failed = False, True
                self._cond.notify_all()

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived."""
        return not self._more and not self._failed and not self._too_large

    def close(self) -> None:
        """The request is over: stop reading a body nobody will consume."""
        if self._socket is not None:
            self._socket.close()
        if self._direct is not None:
            self._direct.detach()
            self.fail()  # a body still coming is nobody's now
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- the worker thread's side: a readable binary stream ----------------------------------------
    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all of the rest when ``n`` < 0), fewer only at the end of the body."""
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(1024 * 1024), b""))
        out = self._take(n)
        got = sum(len(part) for part in out)
        if got < n and self._socket is not None:
            rest = memoryview(bytearray(n - got))
            out.append(rest[: self._from_socket(rest)])
        return bytes(out[0]) if len(out) == 1 else b"".join(out)

    def readinto(self, b) -> int:
        """``read`` into ``b``: the pieces as they came off the connection are copied once, into ``b``."""
        view = memoryview(b).cast("B")
        at = 0
        for part in self._take(len(view)):
            view[at : at + len(part)] = part
            at += len(part)
        if at < len(view) and self._socket is not None:
            at += self._from_socket(view[at:])
        return at

    def _from_socket(self, view: memoryview) -> int:
        """The next bytes from the socket (after everything that came through the loop), into ``view``."""
        body = self._socket
        assert body is not None
        try:
            n = body.read_into(view)
        except OSError:
            with self._cond:
                self._more, self._failed = False, True
            raise
        if not body.remaining:
            with self._cond:
                self._more = False
        return n

    def _take(self, n: int) -> list:
        """The pieces (bytes, or a view of a piece's rest) making up the next ``n`` bytes, fewer only at the
        end of the body; taken under the lock, copied by the caller after it."""
        out: list = []
        got = 0
        with self._cond:
            while got < n:
                if not self._parts:
                    if not self._more or self._socket is not None:  # the rest is the socket's
                        break
                    self._wanted = n  # _size still counts the ``got`` bytes taken (subtracted below)
                    self._cond.wait()
                    continue
                part = self._parts[0]
                if got + len(part) > n:
                    k = n - got
                    piece = memoryview(part)
                    out.append(piece[:k])
                    self._parts[0] = piece[k:]
                    got = n
                else:
                    out.append(self._parts.popleft())
                    got += len(part)
            self._size -= got
            if self._size < self._limit // 2:
                if self._paused:
                    self._paused = False
                    assert self._direct is not None
                    self._direct.resume()
                elif not self._space.is_set():
                    self._loop.call_soon_threadsafe(self._space.set)
            if not out and self._too_large:
                assert self._max is not None  # only a bounded body can be too large
                limit = self._max - FRAMING_BYTES
                raise errors.PayloadTooLarge(
                    f"request body is larger than the limit of {limit} bytes", details={"limit_bytes": limit}
                )
            if not out and self._failed:
                raise OSError("the client closed the connection before the end of the request body")
        return out

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


def run(
    app,
    *,
    host: str,
    port: int,
    max_connections: int = 1000,
    header_timeout: float = 10.0,
    body_timeout: float = 30.0,
    keep_alive: float = 5.0,
) -> None:
    """Serve ``app`` with uvicorn (uvloop + httptools, with the edge's bounds: ``protocol.py``) until SIGINT/SIGTERM."""
    import uvicorn

    from .protocol import make_protocol

    protocol = make_protocol(max_connections=max_connections, header_timeout=header_timeout, body_timeout=body_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        # uvicorn annotates an int, but uses it as a call_later delay: seconds as a float work
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
