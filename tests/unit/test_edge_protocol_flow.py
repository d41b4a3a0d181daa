"""The edge protocol reads a large body without pausing the socket after every read (runtimes/protocol.py)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl

from kubepredict.runtimes.protocol import BODY_HIGH_WATER, make_protocol


def _serve(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    protocol = make_protocol(max_connections=10, header_timeout=10, body_timeout=30)
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
