"""``/async-function``: a bounded queue of bodies spooled to disk, and callbacks only to allow-listed hosts."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
MB = 1024 * 1024


class Target:
    """A local HTTP server recording what it receives; ``status``/``location`` shape its answer,
    ``hold`` (an Event) keeps each request waiting until set."""

    def __init__(self, status: int = 200, location: str | None = None, hold: threading.Event | None = None):
        self.received: list[tuple[dict, bytes]] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target.received.append((dict(self.headers), body))
                if hold is not None:
                    hold.wait(60)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/cb"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int = 1, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.received) >= n

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def targets():
    made: list[Target] = []

    def make(**kw) -> Target:
        made.append(Target(**kw))
        return made[-1]

    yield make
    for t in made:
        t.close()


def _post(gw, callback: str | None, *, path: str = "/async-function/train", **kw) -> httpx.Response:
    headers = {"X-Callback-Url": callback} if callback else {}
    return httpx.post(
        gw.url + path, headers={**headers, **kw.pop("headers", {})}, content=kw.pop("content", b"{}"), timeout=60, **kw
    )


def _refused(r: httpx.Response, why: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "callback_refused" and why in err["message"], err


def test_callbacks_refused_without_an_allow_list(start_gateway, targets):
    gw = start_gateway()
    target = targets()
    _refused(_post(gw, target.url), "KUBEPREDICT_CALLBACK_HOSTS")
    assert _post(gw, None).status_code == 202  # no callback: still accepted
    time.sleep(0.5)
    assert target.received == []


def test_callbacks_refused_for_hosts_schemes_and_addresses_not_allowed(start_gateway, targets):
    listed = "example.org,169.254.169.254,[fe80::1],fd00:ec2::254,100.100.100.200,metadata.google.internal"
    gw = start_gateway({"KUBEPREDICT_CALLBACK_HOSTS": listed})
    target = targets()
    _refused(_post(gw, target.url), "is not in KUBEPREDICT_CALLBACK_HOSTS")  # loopback, not listed
    _refused(_post(gw, "ftp://example.org/cb"), "only http and https")
    _refused(_post(gw, "http://user:pw@example.org/cb"), "credentials")
    _refused(_post(gw, "http://example.org:99999/cb"), "not a valid URL")
    # link-local and metadata addresses are never called, even when listed
    _refused(_post(gw, "http://169.254.169.254/latest/meta-data/"), "metadata address")
    _refused(_post(gw, "http://[fe80::1]/cb"), "link-local")
    _refused(_post(gw, "http://[fd00:ec2::254]/cb"), "metadata address")
    _refused(_post(gw, "http://100.100.100.200/cb"), "metadata address")
    _refused(_post(gw, "http://metadata.google.internal/computeMetadata/v1/"), "metadata host")
    _refused(_post(gw, "http://[::ffff:169.254.169.254]/cb"), "metadata address")


def test_allowed_host_gets_the_callback_with_its_headers(start_gateway, targets):
    target = targets()
    gw = start_gateway({"KUBEPREDICT_CALLBACK_HOSTS": f"example.org, 127.0.0.1:{target.server.server_port}"})
    r = _post(gw, target.url, headers={"X-Call-Id": "call-42"})
    assert r.status_code == 202 and r.headers["X-Call-Id"] == "call-42"
    assert target.wait()
    headers, body = target.received[0]
    assert headers["X-Call-Id"] == "call-42" and headers["X-Function-Status"] == "400"
    assert headers["X-Function-Name"] == "train" and float(headers["X-Duration-Seconds"]) >= 0
    assert headers["Host"] == f"127.0.0.1:{target.server.server_port}"
    assert b"error" in body
    # the same host on another port is not the listed entry
    _refused(_post(gw, f"http://127.0.0.1:{target.server.server_port + 1}/cb"), "is not in")


def test_redirects_are_not_followed(start_gateway, targets):
    second = targets()
    first = targets(status=302, location=second.url)
    gw = start_gateway({"KUBEPREDICT_CALLBACK_HOSTS": "127.0.0.1"})
    assert _post(gw, first.url).status_code == 202
    assert first.wait()
    time.sleep(1.5)
    assert second.received == []
    assert "redirects are not followed" in gw.log_tail()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _spooled(gw) -> list[Path]:
    return sorted((gw.data_dir / "async").glob("*"))


def test_queue_is_bounded_and_bodies_wait_on_disk(start_gateway, targets):
    hold = threading.Event()
    slow = targets(hold=hold)
    gw = start_gateway(
        {
            "KUBEPREDICT_CALLBACK_HOSTS": "127.0.0.1",
            "KUBEPREDICT_CALLBACK_TIMEOUT_SECONDS": "60",
            "KUBEPREDICT_ASYNC_WORKERS": "1",
            "KUBEPREDICT_ASYNC_QUEUE_MAX": "6",
            "KUBEPREDICT_ASYNC_QUEUE_MAX_BYTES": str(130 * MB),
            "KUBEPREDICT_MAX_UPLOAD_BYTES": str(64 * MB),
        }
    )
    try:
        # the only worker waits on a slow callback target: everything after it stays queued
        assert _post(gw, slow.url).status_code == 202
        assert slow.wait()
        before = _rss(gw.proc.pid)
        body = b"x" * (30 * MB)
        for _ in range(4):
            assert _post(gw, None, content=body).status_code == 202
        grown = _rss(gw.proc.pid) - before
        assert grown < 40 * MB, f"RSS grew {grown / MB:.0f} MB holding 120 MB of queued bodies"
        sizes = sorted(p.stat().st_size for p in _spooled(gw))  # the running call's body stays too
        assert sizes == [2] + [30 * MB] * 4
        # the byte bound: a fifth 30 MB body would pass 130 MB, refused from its Content-Length
        full = _post(gw, None, content=body)
        assert full.status_code == 429 and full.headers["Retry-After"]
        assert full.json()["error"]["code"] == "async_queue_full" and "bytes" in full.json()["error"]["message"]
        # the call bound: one more small call fits (6 with the running one), the next does not
        assert _post(gw, None).status_code == 202
        full = _post(gw, None)
        assert full.status_code == 429 and "calls" in full.json()["error"]["message"]
        assert len(_spooled(gw)) == 6
    finally:
        hold.set()
    # every call ends (the queued ones fail: 30 MB is no JSON train request) and its file goes with it
    deadline = time.monotonic() + 60
    while _spooled(gw) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _spooled(gw) == []
    assert _post(gw, None).status_code == 202  # the queue has room again


def test_a_body_larger_than_the_limit_is_refused_and_not_kept(start_gateway):
    gw = start_gateway({"KUBEPREDICT_MAX_UPLOAD_BYTES": str(1 * MB)})

    def chunks():
        for _ in range(4):
            yield b"y" * MB

    r = httpx.post(gw.url + "/async-function/upload", content=chunks(), timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert _spooled(gw) == []
    assert _post(gw, None).status_code == 202


def test_a_client_leaving_mid_body_frees_its_slot_and_file(start_gateway):
    import socket

    gw = start_gateway({"KUBEPREDICT_ASYNC_QUEUE_MAX": "1"})
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(
                f"POST /async-function/train HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {10 * MB}\r\n\r\n".encode()
            )
            s.sendall(b"x" * MB)
            deadline = time.monotonic() + 10
            while not _spooled(gw) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_spooled(gw)) == 1  # being spooled, on disk
        deadline = time.monotonic() + 10
        while _spooled(gw) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _spooled(gw) == []
    assert _post(gw, None).status_code == 202  # the one slot is free again
    assert "Traceback" not in gw.log_tail(200)
