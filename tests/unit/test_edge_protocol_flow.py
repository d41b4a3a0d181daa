"""The edge protocol reads a large body without pausing the socket after every read (runtimes/protocol.py)."""

from __future__ import annotations

import os
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl

from kubepredict.runtimes.protocol import BODY_HIGH_WATER, SOCKET_BODY_BYTES, make_protocol


def _serve(app, *, body_timeout: float = 30):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    protocol = make_protocol(max_connections=10, header_timeout=10, body_timeout=body_timeout)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=protocol, loop="uvloop", lifespan="off", log_level="error"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def _wait_for(results: list, seconds: float = 10) -> None:
    """Until the app has recorded a result (it reads in a thread, after the client is done)."""
    deadline = time.monotonic() + seconds
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)


def _reading_app(received: list):
    async def app(scope, receive, send):
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        received.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_a_large_body_is_read_without_pausing_per_socket_read(monkeypatch):
    pauses = []
    original = FlowControl.pause_reading
    monkeypatch.setattr(FlowControl, "pause_reading", lambda self: (pauses.append(1), original(self))[1])
    received: list[int] = []
    server, thread, url = _serve(_reading_app(received))
    try:
        body = b"x" * (32 * 1024 * 1024)
        r = httpx.post(url, content=body, timeout=30)
        assert r.status_code == 200 and received == [len(body)]
        # uvicorn's own 64 KiB mark paused after nearly every read of up to 256 KiB (hundreds here);
        # an application that keeps up now makes the socket pause only now and then
        assert len(pauses) < 50, len(pauses)  # 165 with the 64 KiB mark, 18 with this one, here
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_slow_application_still_pauses_reading(monkeypatch):
    """Backpressure holds: what the application has not taken stays near BODY_HIGH_WATER."""
    import asyncio

    pauses = []
    original = FlowControl.pause_reading
    monkeypatch.setattr(FlowControl, "pause_reading", lambda self: (pauses.append(1), original(self))[1])
    biggest = []

    async def slow(scope, receive, send):
        while True:
            await asyncio.sleep(0.01)
            message = await receive()
            biggest.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server, thread, url = _serve(slow)
    try:
        r = httpx.post(url, content=b"y" * (8 * 1024 * 1024), timeout=60)
        assert r.status_code == 200
        assert pauses, "a slow application must pause reading"
        assert max(biggest) <= BODY_HIGH_WATER + 512 * 1024  # the mark plus at most one socket read
    finally:
        server.should_exit = True
        thread.join(10)


# ---- a body handed straight to the reading thread (protocol.direct_body, asgi._BodyAhead) ------------------
def _ahead_app(results: list, *, limit: int, max_bytes: int | None = None, delay: float = 0.0, close: bool = True):
    """Reads the body in a thread through ``_BodyAhead`` (as uploads do); records what it got and how far
    the body was ever buffered ahead of it."""
    import asyncio
    import hashlib

    from kubepredict.runtimes.asgi import _BodyAhead

    class Recording(_BodyAhead):
        peak = 0

        def feed(self, body: bytes) -> bool:
            pause = super().feed(body)
            Recording.peak = max(Recording.peak, self._size)
            return pause

    async def app(scope, receive, send):
        ahead = Recording(receive, limit=limit, max_bytes=max_bytes)

        def read():
            digest, size = hashlib.sha256(), 0
            try:
                while chunk := ahead.read(256 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                    time.sleep(delay)
            except Exception as exc:  # noqa: BLE001 - what the thread saw is the result
                return type(exc).__name__
            return size, digest.hexdigest()

        try:
            got = await asyncio.get_running_loop().run_in_executor(None, read)
        finally:
            ahead.close()
        socket_read = ahead._socket is not None
        results.append({"direct": ahead._direct is not None, "socket": socket_read, "got": got, "peak": Recording.peak})
        status = 413 if got == "PayloadTooLarge" else 200
        headers = [(b"connection", b"close")] if close else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_bodies_one_after_another_on_a_kept_alive_connection():
    """A body that ends while reading is paused (the reader far behind) leaves the connection readable
    for the next request on it."""
    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=512 * 1024, delay=0.002, close=False))
    try:
        with httpx.Client(timeout=30) as client:
            sizes = [3 * 1024 * 1024, 5 * 1024 * 1024 + 7, 1024 * 1024]
            for size in sizes:
                assert client.post(url, content=b"k" * size).status_code == 200
        assert [r["got"][0] for r in results] == sizes and all(r["direct"] for r in results)
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_slow_reader_pauses_the_connection_near_the_limit():
    results: list = []
    limit = 1024 * 1024
    server, thread, url = _serve(_ahead_app(results, limit=limit, delay=0.005))
    try:
        r = httpx.post(url, content=b"z" * (8 * 1024 * 1024), timeout=60)
        assert r.status_code == 200
        (result,) = results
        assert result["direct"] and result["got"][0] == 8 * 1024 * 1024
        assert result["peak"] <= limit + 512 * 1024, result["peak"]  # the limit plus at most one socket read
    finally:
        server.should_exit = True
        thread.join(10)


def test_expect_100_continue_is_answered_before_the_body_is_sent():
    """A client (curl, for large files) waits for ``100 Continue`` before sending the body: the direct
    path answers it as uvicorn's ``receive()`` would."""
    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=1024 * 1024))
    port = int(url.rsplit(":", 1)[1])
    try:
        body = b"a,b\n" + b"1,2\n" * 100_000
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            assert s.recv(64).startswith(b"HTTP/1.1 100 Continue"), "no 100 Continue before the body"
            s.sendall(body)
            answer = b""
            while b"\r\n\r\nok" not in answer:
                more = s.recv(4096)
                if not more:
                    break
                answer += more
        assert answer.startswith(b"HTTP/1.1 200")
        assert results[0]["direct"] and results[0]["got"][0] == len(body)
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_chunked_body_past_the_limit_is_refused_while_it_is_still_coming():
    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=1024 * 1024, max_bytes=2 * 1024 * 1024))
    try:

        def chunks():
            for _ in range(64):  # 16 MiB offered, in chunked encoding (no Content-Length)
                yield b"q" * (256 * 1024)

        r = httpx.post(url, content=chunks(), timeout=30)
        assert r.status_code == 413
        assert results[0]["direct"] and results[0]["got"] == "PayloadTooLarge"
    finally:
        server.should_exit = True
        thread.join(10)


# ---- a large Content-Length body read from the socket by the reading thread (protocol.SocketBody) ---------
def _raw_post(port: int, head_extra: bytes, length: int, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n" % (head_extra, length) + first)
    return s


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while more := s.recv(65536):
        answer += more
    return answer


@pytest.mark.parametrize(
    ("size", "from_socket"),
    [(6 * 1024 * 1024, False), (SOCKET_BODY_BYTES + 3 * 1024 * 1024 + 11, True)],
    ids=["through-the-loop", "from-the-socket"],
)
def test_a_body_goes_straight_to_the_reading_thread_whole_and_in_order(size, from_socket):
    """The part that came with the headers (through the loop) and the rest make the body in order. A large
    Content-Length body's rest comes from the socket; the parser never saw it, so the connection ends
    with the response. A smaller one comes through the loop and the connection stays open."""
    import hashlib

    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=4 * 1024 * 1024, close=False))
    port = int(url.rsplit(":", 1)[1])
    try:
        body = os.urandom(size)
        with _raw_post(port, b"", len(body), body[:100_000]) as s:
            time.sleep(0.2)  # the first part is parsed before the rest is sent
            s.sendall(body[100_000:])
            answer = b""
            while not answer.endswith(b"0\r\n\r\n") and (more := s.recv(65536)):  # the whole chunked answer
                answer += more
            s.settimeout(2)
            closed = _closed(s)
        assert answer.startswith(b"HTTP/1.1 200")
        assert (b"connection: close" in answer.lower(), closed) == (from_socket, from_socket)
        (result,) = results
        assert result["direct"] and result["socket"] == from_socket
        assert result["got"] == (len(body), hashlib.sha256(body).hexdigest())
    finally:
        server.should_exit = True
        thread.join(10)


def _closed(s: socket.socket) -> bool:
    """Whether the server closes the connection (within the socket's timeout) rather than keep it open."""
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False


def test_smaller_and_chunked_bodies_still_come_through_the_loop_on_a_kept_alive_connection():
    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=4 * 1024 * 1024, close=False))
    try:
        with httpx.Client(timeout=30) as client:
            small = client.post(url, content=b"s" * (SOCKET_BODY_BYTES - 1))
            chunked = client.post(url, content=iter([b"c" * (SOCKET_BODY_BYTES + 1)]))
            # before the reader attaches, the loop reads at most ~1 MiB (BODY_HIGH_WATER) and one socket read
            large = client.post(url, content=b"l" * (SOCKET_BODY_BYTES + 2 * 1024 * 1024))
        assert [r.status_code for r in (small, chunked, large)] == [200, 200, 200]
        assert small.headers.get("connection") != "close" and chunked.headers.get("connection") != "close"
        assert large.headers["connection"] == "close"
        assert [(r["socket"], r["got"][0]) for r in results] == [
            (False, SOCKET_BODY_BYTES - 1),
            (False, SOCKET_BODY_BYTES + 1),
            (True, SOCKET_BODY_BYTES + 2 * 1024 * 1024),
        ]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(
    ("length", "sent", "from_socket"),
    [(6 * 1024 * 1024, 300_000, False), (4 * SOCKET_BODY_BYTES, SOCKET_BODY_BYTES + 1000, True)],
    ids=["through-the-loop", "from-the-socket"],
)
def test_a_client_gone_mid_body_is_an_error_for_the_reader_not_a_short_body(length, sent, from_socket):
    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=1024 * 1024))
    port = int(url.rsplit(":", 1)[1])
    try:
        with _raw_post(port, b"", length, b"x" * 1000) as s:
            time.sleep(0.2)  # the first part is parsed (and the socket handed over) before the rest comes
            s.sendall(b"y" * (sent - 1000))
            time.sleep(0.2)
        _wait_for(results)
        assert results and results[0]["direct"] and results[0]["got"] == "OSError"
        assert results[0]["socket"] == from_socket
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_body_from_the_socket_too_slow_is_answered_408_and_closed():
    """The slow-body rule the sweep applies to bodies read through the loop holds for one read from the
    socket: under MIN_BODY_BYTES in body_timeout seconds, a JSON 408, the connection closed, and the reader
    an error rather than a short body."""
    import json

    results: list = []
    server, thread, url = _serve(_ahead_app(results, limit=1024 * 1024), body_timeout=0.5)
    port = int(url.rsplit(":", 1)[1])
    try:
        with _raw_post(port, b"", 2 * SOCKET_BODY_BYTES, b"x" * 1000) as s:
            t = time.monotonic()
            for _ in range(6):  # a trickle: 100 bytes every 0.2 s
                time.sleep(0.2)
                try:
                    s.sendall(b"z" * 100)
                except OSError:
                    break
            answer = _answer(s)
            waited = time.monotonic() - t
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(payload)["error"]["code"] == "request_timeout"
        assert waited < 5
        _wait_for(results)
        assert results and results[0]["socket"] and results[0]["got"] == "OSError"
    finally:
        server.should_exit = True
        thread.join(10)
