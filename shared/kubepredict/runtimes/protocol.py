"""uvicorn's httptools protocol with the bounds a public edge needs (uvicorn has a keep-alive timeout only).

- **Slow headers**: a connection must deliver a request's headers within ``header_timeout`` seconds of
  opening (or of its first byte after a response); a slow-loris client is answered 408 and closed.
- **Slow bodies**: once the headers are in, a body must keep arriving at ``MIN_BODY_BYTES`` per
  ``body_timeout`` seconds (unless the server itself paused reading: a busy handler is not a slow client).
- **Connection bound**: above ``max_connections``, the connection that has waited longest without a
  complete request (idle keep-alive, slow headers) is closed to make room; only when there is none is
  the new one refused with 503.
- The server's own errors (unparsable requests: 400, the two above: 408, 503) are the API's JSON errors.
- **Large bodies from the socket**: the rest of a Content-Length body of at least ``SOCKET_BODY_BYTES`` is
  read by the application's thread straight from the socket into its own buffer (``SocketBody``), not
  through the event loop; that connection then closes after its response.

Timestamps are plain attributes set in the parser callbacks; one sweep a second over the open
connections applies the timeouts, so a fast request pays a few attribute writes, no timer.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
import weakref
from typing import Any, Protocol

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

WAITING, HEADERS, BODY, BUSY, IDLE = range(5)  # where a connection is in its current request
MIN_BODY_BYTES = 16 * 1024
BODY_HIGH_WATER = 1024 * 1024
SWEEP_SECONDS = 1.0
_SEQUENCE = itertools.count()
REASONS = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}
_SWEPT: weakref.WeakSet[ServerState] = weakref.WeakSet()  # servers whose connections a sweep already watches
#: A Content-Length body with at least this much still to come is read from the socket by the application's
#: thread (SocketBody). Through the loop each socket read is copied into a new bytes object by the parser and
#: again into the reader's buffer, with a turn of the loop and a thread wake-up per read: for a 393 MB upload
#: ~8 % of the gateway's CPU on two cores (2.85 against 2.61 s; 231 against 252 MB/s, 5 gateways each).
#: Smaller bodies keep the connection alive for the next request.
SOCKET_BODY_BYTES = 8 * 1024 * 1024


class BodySink(Protocol):
    """Where ``direct_body`` hands a request's body, on the event loop's thread."""

    def feed(self, body: bytes) -> bool:
        """Take the next piece of the body; True asks the connection to stop reading until ``resume()``."""
        ...

    def finish(self) -> None:
        """The body is complete."""
        ...

    def fail(self) -> None:
        """The connection closed before the body was complete."""
        ...

    # Optional: ``take_socket(body: SocketBody) -> None``, the rest of the body is to be read from ``body``
    # (see SOCKET_BODY_BYTES); a sink without it gets every piece through ``feed``.


class SocketBody:
    """The rest of a request's body, ``remaining`` bytes, read by the application's thread straight from the
    connection's socket (a duplicate of its descriptor) into the caller's buffer.

    The connection has stopped reading and closes after its response: its parser never sees these bytes.
    The slow-body rule holds here too: fewer than MIN_BODY_BYTES in ``body_timeout`` seconds is answered 408
    and the connection closed, as the sweep does for a body read through the loop."""

    def __init__(self, protocol: EdgeProtocol, sock: socket.socket, remaining: int):
        self._protocol, self._sock, self.remaining = protocol, sock, remaining
        self._timeout = protocol.body_timeout
        sock.settimeout(self._timeout)  # Python polls; the shared descriptor stays non-blocking for the loop
        self._since, self._bytes = time.monotonic(), 0
        self._lock = threading.Lock()
        self._closed = False

    def read_into(self, view: memoryview) -> int:
        """Fill ``view`` (less only where the body ends); OSError if the client went away or is too slow."""
        at = 0
        while at < len(view) and self.remaining:
            try:
                n = self._sock.recv_into(view[at:], min(len(view) - at, self.remaining))
            except TimeoutError:
                n = -1
            except OSError as exc:  # closed under us (the request is over), reset by the client
                self.close()
                raise OSError("the connection closed before the end of the request body") from exc
            if n == 0:
                self.close()
                raise OSError("the client closed the connection before the end of the request body")
            if n > 0:
                at += n
                self.remaining -= n
                self._bytes += n
            now = time.monotonic()
            if now - self._since > self._timeout:
                if self._bytes < MIN_BODY_BYTES:
                    self._too_slow()
                self._since, self._bytes = now, 0
        if not self.remaining:
            self.close()
        return at

    def _too_slow(self) -> None:
        message = f"the request body arrived slower than {MIN_BODY_BYTES} bytes per {self._timeout:g} s"
        try:
            self._protocol.loop.call_soon_threadsafe(self._protocol.refuse, 408, "request_timeout", message)
        except RuntimeError:  # the loop is closed: the server is gone
            pass
        self.close()
        raise OSError(message)

    def close(self) -> None:
        """Let go of the descriptor (from any thread; again is harmless): the connection itself closes when
        the loop's transport does."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._sock.close()


class DirectBody:
    """A request's body going straight to a ``BodySink`` (see ``direct_body``)."""

    def __init__(self, protocol: EdgeProtocol, cycle) -> None:
        self._protocol, self._cycle, self._loop = protocol, cycle, protocol.loop

    def resume(self) -> None:
        """Start reading again after ``feed`` asked for a pause (from any thread)."""
        self._loop.call_soon_threadsafe(self._protocol.kp_resume, self._cycle)

    def detach(self) -> None:
        """Stop handing the body to the sink (on the loop's thread): what still comes is uvicorn's again."""
        if getattr(self._cycle, "kp_sink", None) is not None:
            self._cycle.kp_sink = None


def direct_body(receive, sink: BodySink) -> DirectBody | None:
    """Hand the rest of the current request's body to ``sink`` as the parser yields it, instead of through
    ``receive()``: uvicorn copies each socket read into its buffer, copies that again into every
    ``receive()`` message, and takes a turn of the loop per message. None when ``receive`` is not one of
    this module's connections' (another ASGI server): read through ``receive()`` then."""
    cycle = getattr(receive, "__self__", None)
    protocol = getattr(cycle, "kp_protocol", None)
    if protocol is None or getattr(cycle, "kp_sink", None) is not None:
        return None
    return protocol.kp_attach(cycle, sink)


def make_protocol(*, max_connections: int, header_timeout: float, body_timeout: float) -> type:
    """The protocol class for ``uvicorn.Config(http=...)`` with these bounds."""
    return type(
        "EdgeProtocol",
        (EdgeProtocol,),
        {"max_connections": max_connections, "header_timeout": header_timeout, "body_timeout": body_timeout},
    )


class EdgeProtocol(HttpToolsProtocol):
    max_connections = 1000
    header_timeout = 10.0
    body_timeout = 30.0
    kp_phase: int  # WAITING, HEADERS, ...
    kp_since: float  # loop time the current phase began
    kp_bytes: int  # body bytes since kp_since
    kp_seq: int  # opening order
    kp_body: int  # the current request's body bytes parsed so far

    # ---- connection -------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.kp_phase, self.kp_since, self.kp_bytes, self.kp_body = WAITING, self.loop.time(), 0, 0
        self.kp_seq = next(_SEQUENCE)  # the loop's clock ticks in milliseconds: ties go to the older connection
        state = self.server_state
        if state not in _SWEPT:
            _SWEPT.add(state)
            self.loop.call_later(SWEEP_SECONDS, _sweep, self.loop, state)
        if (
            len(self.connections) > self.max_connections
            and self._open() > self.max_connections
            and not self._shed_one()
        ):
            self.refuse(503, "too_many_connections", "the server has too many open connections; try again shortly")

    def _open(self) -> int:
        """Connections not already closing (a closed one leaves ``connections`` a loop turn later)."""
        return sum(1 for c in self.connections if not c.transport.is_closing())

    def _shed_one(self) -> bool:
        """Close the connection that has waited longest without a complete request; False if none has."""
        victims = [
            c
            for c in self.connections
            if isinstance(c, EdgeProtocol)
            and c is not self
            and not c.transport.is_closing()
            and c.kp_phase in (WAITING, HEADERS, IDLE)
        ]
        if not victims:
            return False
        oldest = min(victims, key=lambda c: (c.kp_since, c.kp_seq))
        oldest.refuse(
            503,
            "connection_shed",
            "closed to make room for other clients: too many open connections",
            say=oldest.kp_phase == HEADERS,
        )
        return True

    def refuse(self, status: int, code: str, message: str, *, say: bool = True) -> None:
        """Close, first answering ``status`` with the API's JSON error when ``say`` (the server's own answers,
        outside the app: never in the middle of, or after, the app's response to the current request)."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if say and not (self.kp_phase in (BODY, BUSY) and cycle is not None and cycle.response_started):
            body = orjson.dumps({"error": {"code": code, "message": message, "details": {}}})
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
                % (status, REASONS[status], len(body))
            )
            if status == 503:
                head += b"retry-after: 5\r\n"
            self.transport.write(head + b"\r\n" + body)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self.refuse(400, "invalid_http_request", f"the request is not valid HTTP/1.1: {msg}")

    # ---- parser callbacks: where the connection is ----------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.kp_phase != WAITING:  # the first request's deadline runs from the connection's opening
            self.kp_since = self.loop.time()
        self.kp_phase = HEADERS

    def on_headers_complete(self) -> None:
        self.kp_phase, self.kp_since, self.kp_bytes, self.kp_body = BODY, self.loop.time(), 0, 0
        before = self.cycle
        super().on_headers_complete()
        cycle: Any = self.cycle  # uvicorn's RequestResponseCycle, with our two attributes added
        if cycle is not None and cycle is not before:  # a new request's cycle (not an upgrade)
            cycle.kp_protocol, cycle.kp_sink = self, None

    # ---- a body read straight into the application (direct_body) ----------------------------------
    def kp_attach(self, cycle: Any, sink: BodySink) -> DirectBody:
        """What uvicorn's ``receive()`` does first (answer ``Expect: 100-continue``, resume reading), and
        hand the body that already arrived to ``sink``; what comes next goes there from ``on_body``."""
        if cycle.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        pause = False
        if cycle.body:
            early, cycle.body = bytes(cycle.body), bytearray()
            pause = sink.feed(early)
        if not cycle.more_body:
            sink.finish()
        elif cycle.disconnected:
            sink.fail()
        elif self.cycle is cycle and not cycle.response_complete and self._kp_hand_over(cycle, sink):
            pass  # the rest comes from the socket
        else:
            cycle.kp_sink = sink
            if self.cycle is cycle and not cycle.response_complete:
                self.flow.pause_reading() if pause else self.flow.resume_reading()
        return DirectBody(self, cycle)

    def _kp_hand_over(self, cycle: Any, sink: BodySink) -> bool:
        """Hand the rest of a large Content-Length body to ``sink`` as a SocketBody; False when it is not one
        (chunked, small, TLS, a pipelined request queued behind it) or the sink reads only through ``feed``."""
        take = getattr(sink, "take_socket", None)
        if take is None or self.pipeline or self.transport.get_extra_info("sslcontext") is not None:
            return False
        length = None
        for key, value in cycle.scope["headers"]:
            if key == b"transfer-encoding":
                return False
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:  # a list of lengths, say: the loop reads it as before
                    return False
        raw = self.transport.get_extra_info("socket")
        if length is None or length - self.kp_body < SOCKET_BODY_BYTES or raw is None:
            return False
        self.flow.pause_reading()
        cycle.keep_alive = False  # the parser never sees the rest of this body: no next request on it
        sock = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
        take(SocketBody(self, sock, length - self.kp_body))
        return True

    def kp_resume(self, cycle: Any) -> None:
        if self.cycle is cycle and getattr(cycle, "kp_sink", None) is not None and not self.transport.is_closing():
            self.flow.resume_reading()

    def on_body(self, body: bytes) -> None:
        """uvicorn's own, with a higher mark before reading pauses: uvicorn pauses above 64 KiB, i.e. after
        every socket read of a large body (uvloop reads up to 256 KiB), and resumes at the next
        ``receive()``: two epoll changes and a round of Python per read. Reading now pauses only when the
        application has not taken ``BODY_HIGH_WATER`` bytes. A body read ahead by a thread goes to its
        sink instead (``direct_body``), which says when to pause."""
        self.kp_bytes += len(body)
        self.kp_body += len(body)
        cycle: Any = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        sink = cycle.kp_sink
        if sink is not None:
            if sink.feed(body):
                self.flow.pause_reading()
            return
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self.kp_phase = BUSY
        super().on_message_complete()
        cycle: Any = self.cycle
        sink = getattr(cycle, "kp_sink", None)
        if sink is not None and not cycle.more_body:
            cycle.kp_sink = None
            sink.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        cycle: Any = self.cycle
        sink = getattr(cycle, "kp_sink", None)
        super().connection_lost(exc)
        if sink is not None:
            cycle.kp_sink = None
            sink.fail()

    def on_response_complete(self) -> None:
        if self.kp_phase == BUSY:
            self.kp_phase, self.kp_since = IDLE, self.loop.time()
        super().on_response_complete()

    # ---- the sweep ---------------------------------------------------------------------------------
    def kp_overdue(self, now: float) -> None:
        phase = self.kp_phase
        if phase in (WAITING, HEADERS):
            if now - self.kp_since > self.header_timeout:
                self.refuse(
                    408,
                    "request_timeout",
                    f"the request headers did not arrive within {self.header_timeout:g} s",
                    say=phase == HEADERS,
                )
        elif phase == BODY and now - self.kp_since > self.body_timeout:
            if self.kp_bytes < MIN_BODY_BYTES and not self.flow.read_paused:
                self.refuse(
                    408,
                    "request_timeout",
                    f"the request body arrived slower than {MIN_BODY_BYTES} bytes per {self.body_timeout:g} s",
                )
            else:
                self.kp_since, self.kp_bytes = now, 0


def _sweep(loop: asyncio.AbstractEventLoop, state: ServerState) -> None:
    now = loop.time()
    for conn in list(state.connections):
        if isinstance(conn, EdgeProtocol):
            try:
                conn.kp_overdue(now)
            except Exception:  # noqa: BLE001 - a connection torn down under us; the sweep goes on
                pass
    loop.call_later(SWEEP_SECONDS, _sweep, loop, state)
