"""The embedded gateway's edge, attacked as in issue 16: bodies refused before they are read, slow clients
shed, open mode not drivable from other sites, tokens on every route that reads or changes data, and the
small things (methods, HEAD, odd paths, token spelling, the server's own errors as JSON).

Real ``kubepredict serve`` processes. The edge does not depend on the storage backend, so these run
on the embedded one only (``backend`` is narrowed below).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.api import Api
from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e
IRIS = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
TOKEN, READ_TOKEN = "edge-write-token", "edge-read-token"
PAGE = "http://page.example:8000"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
LIMIT = 1024 * 1024  # KUBEPREDICT_MAX_UPLOAD_BYTES of the token gateway


@pytest.fixture(scope="session", params=["embedded"])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def open_gw(tmp_path_factory):
    gw = GatewayProcess(
        tmp_path_factory.mktemp("edge-open"),
        env={
            "KUBEPREDICT_HEADER_TIMEOUT_SECONDS": "2",
            "KUBEPREDICT_BODY_TIMEOUT_SECONDS": "2",
            "KUBEPREDICT_MAX_CONNECTIONS": "60",
        },
    ).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def token_gw(tmp_path_factory):
    gw = GatewayProcess(
        tmp_path_factory.mktemp("edge-token"),
        env={
            "KUBEPREDICT_API_TOKEN": TOKEN,
            "KUBEPREDICT_READ_TOKEN": READ_TOKEN,
            "KUBEPREDICT_MAX_UPLOAD_BYTES": str(LIMIT),
            "KUBEPREDICT_CORS_ORIGINS": PAGE,
        },
    ).start()
    yield gw
    gw.stop()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def raw(port: int, request: bytes, *, wait: float = 3.0) -> bytes:
    """Send ``request`` as is and return what the server answers within ``wait`` seconds (b"" if nothing)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)
        s.sendall(request)
        out = b""
        try:
            while b"\r\n\r\n" not in out or len(out) < out.find(b"\r\n\r\n") + 10:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return out


# ---- bodies: refused before they are read -------------------------------------------------------------
def test_a_request_without_a_token_is_refused_before_its_body(token_gw):
    """No token, 10 GB announced: 401 at once (not 413, not after reading); chunked and no token: 401 at
    once too, without waiting for a body the client never sends."""
    started = time.monotonic()
    out = raw(
        token_gw.port,
        b"POST /function/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        b"Content-Length: 10000000000\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 401") and b'"unauthorized"' in out
    out = raw(
        token_gw.port,
        b"POST /function/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 401"), out
    assert time.monotonic() - started < 2.5


def test_a_declared_length_above_the_limit_is_refused_before_the_body(token_gw):
    out = raw(
        token_gw.port,
        b"POST /function/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 10000000000\r\n\r\n",
        wait=2,
    )
    assert out.startswith(b"HTTP/1.1 413") and b'"payload_too_large"' in out
    assert b"connection: close" in out.lower()


def test_a_chunked_body_is_counted_as_it_arrives(token_gw):
    """A chunked upload past the limit: 413, and the server stops reading long before the client is done."""
    sent = 0
    total = 64 * LIMIT

    def chunks():
        nonlocal sent
        block = b"a,b\n" + b"1,2\n" * 16383
        while sent < total:
            sent += len(block)
            yield block

    r = httpx.post(
        f"{token_gw.url}/function/upload",
        content=chunks(),
        timeout=30,
        headers={**bearer(TOKEN), "Content-Type": "text/csv"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert sent < total


# ---- slow clients ---------------------------------------------------------------------------------------
def test_slow_loris_connections_are_shed_and_healthz_keeps_answering(open_gw):
    """150 connections that never finish their headers: /healthz answers within 1.5 s throughout, and
    the server closes the slow ones after the header timeout (2 s here; 10 s by default)."""
    socks = []
    for _ in range(150):
        s = socket.create_connection(("127.0.0.1", open_gw.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    try:
        for _ in range(5):
            for s in socks:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            t = time.monotonic()
            assert httpx.get(f"{open_gw.url}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - t < 1.5
            time.sleep(0.8)
        closed = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                data = s.recv(4096)
                closed += data == b"" or data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503"))  # timed out or shed
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()


def test_slow_bodies_do_not_starve_the_worker_threads_or_healthz(open_gw):
    """20 uploads (more than the 16 worker threads) that stall after a few bytes: /healthz and other
    requests still answer at once, and the stalled uploads are closed after the body timeout."""
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", open_gw.port))
        s.sendall(
            b"POST /function/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 400000\r\n\r\na,b\n"
        )
        socks.append(s)
    try:
        time.sleep(0.5)
        for _ in range(3):
            t = time.monotonic()
            assert httpx.get(f"{open_gw.url}/healthz", timeout=5).status_code == 200
            assert httpx.get(f"{open_gw.url}/function/train/algorithms", timeout=5).status_code == 200
            assert time.monotonic() - t < 2.0
            for s in socks:
                try:
                    s.sendall(b"1")  # a byte a second: far below any real upload
                except OSError:
                    pass
            time.sleep(1)
        time.sleep(3)
        for s in socks:
            s.settimeout(1)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    finally:
        for s in socks:
            s.close()


def test_idle_connections_above_the_bound_are_shed_oldest_first(open_gw):
    """KUBEPREDICT_MAX_CONNECTIONS=60: 80 idle connections do not lock others out; the oldest are closed."""
    socks = [socket.create_connection(("127.0.0.1", open_gw.port)) for _ in range(80)]
    try:
        time.sleep(0.3)
        assert httpx.get(f"{open_gw.url}/healthz", timeout=3).status_code == 200
        closed = 0
        for s in socks[:20]:
            s.settimeout(1)
            try:
                closed += s.recv(100) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= 19
    finally:
        for s in socks:
            s.close()


# ---- open mode and other sites ----------------------------------------------------------------------
def test_open_mode_answers_only_its_own_host_names(open_gw):
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    r = httpx.get(f"{open_gw.url}/function/upload", headers={"Host": "evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    r = httpx.post(f"{open_gw.url}/function/train", json={}, headers={"Host": f"evil.example:{open_gw.port}"})
    assert r.status_code == 403
    for host in ("localhost", f"localhost:{open_gw.port}", f"127.0.0.1:{open_gw.port}", f"[::1]:{open_gw.port}"):
        assert httpx.get(f"{open_gw.url}/function/upload", headers={"Host": host}).status_code == 200, host
    assert httpx.get(f"{open_gw.url}/healthz", headers={"Host": "evil.example"}).status_code == 200  # probes


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_json_routes_refuse_types_a_page_can_send_without_asking(open_gw, ctype):
    """A browser's request (it carries Origin, or Sec-Fetch-Mode) must label a JSON body as JSON."""
    body = b'{"dataset_id": "ds_nope", "target": "y"}'
    for browser in ({"Origin": open_gw.url}, {"Sec-Fetch-Mode": "no-cors"}):
        headers = {**browser, **({"Content-Type": ctype} if ctype else {})}
        for path in ("/function/train", "/function/predict", "/v1/models/x:predict", "/models/x/invocations"):
            r = httpx.post(open_gw.url + path, content=body, headers=headers)
            assert r.status_code == 415, (path, browser, r.status_code, r.text)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_clients_that_are_not_pages_keep_their_default_types(open_gw, ctype):
    """faas-cli invoke (text/plain) and curl -d (a form type) send no Origin: their JSON is read."""
    r = httpx.post(
        f"{open_gw.url}/function/train",
        content=b'{"dataset_id": "ds_nope", "target": "y"}',
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset_not_found"


@pytest.mark.parametrize(
    "ctype",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/cloudevents+json",
        "application/vnd.kubepredict+json",
    ],
)
def test_json_routes_take_json_types(open_gw, ctype):
    r = httpx.post(
        f"{open_gw.url}/function/train",
        content=b'{"dataset_id": "ds_nope", "target": "y"}',
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset_not_found"


def test_a_page_on_another_site_cannot_change_anything_in_open_mode(open_gw):
    """A form post (multipart upload) from another origin is refused; the same origin (the /ui/ page) works."""
    files = {"file": ("x.csv", IRIS, "text/csv")}
    r = httpx.post(f"{open_gw.url}/function/upload", files=files, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    r = httpx.post(f"{open_gw.url}/function/upload", files=files, headers={"Origin": "null"})
    assert r.status_code == 403
    r = httpx.post(f"{open_gw.url}/function/upload", files=files, headers={"Origin": open_gw.url})
    assert r.status_code == 201, r.text
    # and without a configured origin, no CORS: a preflight is refused, no Access-Control-* header
    r = httpx.options(
        f"{open_gw.url}/function/train", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST"}
    )
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_cors_preflight_and_answers_for_a_listed_origin(token_gw):
    r = httpx.options(
        f"{token_gw.url}/function/train",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == PAGE
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert "POST" in r.headers["access-control-allow-methods"]
    r = httpx.get(f"{token_gw.url}/function/train/algorithms", headers={"Origin": PAGE, **bearer(READ_TOKEN)})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PAGE
    r = httpx.get(f"{token_gw.url}/function/train/algorithms", headers={"Origin": PAGE})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PAGE  # the page can read why
    r = httpx.get(
        f"{token_gw.url}/function/train/algorithms", headers={"Origin": "http://other.example", **bearer(TOKEN)}
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = httpx.options(
        f"{token_gw.url}/function/train",
        headers={"Origin": "http://other.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 403


# ---- tokens on every route ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(token_gw):
    api = Api(token_gw.url)
    api.http.headers.update(bearer(TOKEN))
    ds = api.upload(IRIS, "iris")
    t = api.train(dataset_id=ds["dataset_id"], target="species", algorithm="logistic_regression", name="iris")
    assert api.wait(t["job_id"])["status"] == "succeeded"
    return {"ds": ds["dataset_id"], "model": t["model_id"], "job": t["job_id"]}


JSON = {"Content-Type": "application/json"}
# (method, path, json body or bytes, extra headers); {ds}, {model}, {job} from ``trained``
READ_ROUTES = [
    ("GET", "/function/upload", None, {}),
    ("GET", "/function/upload/{ds}", None, {}),
    ("HEAD", "/function/upload", None, {}),
    ("GET", "/function/train", None, {}),
    ("GET", "/function/train/algorithms", None, {}),
    ("GET", "/function/train/{model}", None, {}),
    ("GET", "/function/predict", None, {}),
    ("POST", "/function/predict", {"model_id": "{model}", "instances": [ROW]}, {}),
    ("GET", "/function/result", None, {}),
    ("GET", "/function/result/{job}", None, {}),
    ("GET", "/system/functions", None, {}),
    ("GET", "/system/function/train", None, {}),
    ("GET", "/metrics", None, {}),
    ("GET", "/v2/models/iris", None, {}),
    ("GET", "/v2/models/iris/ready", None, {}),
    (
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]},
        {},
    ),
    (
        "POST",
        "/function/predict/v2/models/iris/infer",
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": list(ROW.values())}]},
        {},
    ),
    ("GET", "/v1/models/iris", None, {}),
    ("POST", "/v1/models/iris:predict", {"instances": [ROW]}, {}),
    ("POST", "/models/iris/invocations", {"dataframe_records": [ROW]}, {}),
    ("GET", "/models/iris/ping", None, {}),
    ("GET", "/models/iris/version", None, {}),
]
WRITE_ROUTES = [
    ("POST", "/function/upload", b"a,b\n1,2\n3,4\n", {"Content-Type": "text/csv"}),
    ("POST", "/function/train", {"dataset_id": "{ds}", "target": "species"}, {}),
    ("DELETE", "/function/upload/ds_0000000000000000", None, {}),
    ("DELETE", "/function/train/mdl_0000000000000000", None, {}),
    ("PUT", "/function/train/no-such-name/aliases/champion", {"version": 1}, {}),
    ("DELETE", "/function/train/no-such-name/aliases/champion", None, {}),
    ("DELETE", "/function/result/job_0000000000000000", None, {}),
    ("POST", "/async-function/predict", {"model_id": "{model}", "instances": [ROW]}, {}),
    ("POST", "/async-function/upload", b"a,b\n1,2\n", {"Content-Type": "text/csv"}),
]
OPEN_ROUTES = [
    "/healthz",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2",
    "/ping",
    "/health",
    "/version",
    "/ui/",
    "/ui/app.js",
]


def _call(gw, trained, route, token):
    method, path, body, headers = route
    path = path.format(**trained)
    kw: dict = {"headers": {**headers, **(bearer(token) if token else {})}}
    if isinstance(body, dict):
        import json

        kw["content"] = json.dumps(body).replace("{model}", trained["model"]).replace("{ds}", trained["ds"]).encode()
        kw["headers"].update(JSON)
    elif body is not None:
        kw["content"] = body
    return httpx.request(method, gw.url + path, timeout=30, **kw)


@pytest.mark.parametrize("route", READ_ROUTES, ids=[f"{r[0]} {r[1]}" for r in READ_ROUTES])
def test_read_routes_need_a_token_and_take_either(token_gw, trained, route):
    assert _call(token_gw, trained, route, None).status_code == 401
    assert _call(token_gw, trained, route, "wrong").status_code == 401
    for token in (READ_TOKEN, TOKEN):
        r = _call(token_gw, trained, route, token)
        assert r.status_code == 200, (token, r.status_code, r.text)


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=[f"{r[0]} {r[1]}" for r in WRITE_ROUTES])
def test_write_routes_need_the_api_token(token_gw, trained, route):
    r = _call(token_gw, trained, route, None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = _call(token_gw, trained, route, READ_TOKEN)
    assert r.status_code == 403 and r.json()["error"]["code"] == "read_only_token", r.text
    r = _call(token_gw, trained, route, TOKEN)
    assert r.status_code in (201, 202, 204, 404), r.text  # 404: the made-up ids of the deletes


def test_a_batch_prediction_needs_the_api_token(token_gw, trained):
    """predict names a dataset → a queued job: refused for the read-only token once the body says so."""
    body = {"model_id": trained["model"], "dataset_id": trained["ds"]}
    r = httpx.post(f"{token_gw.url}/function/predict", json=body, headers=bearer(READ_TOKEN))
    assert r.status_code == 403 and r.json()["error"]["code"] == "read_only_token"
    r = httpx.post(f"{token_gw.url}/function/predict", json=body, headers=bearer(TOKEN))
    assert r.status_code == 202


@pytest.mark.parametrize("path", OPEN_ROUTES)
def test_health_and_the_page_stay_open(token_gw, path):
    assert httpx.get(token_gw.url + path).status_code == 200


def test_the_bearer_scheme_is_case_insensitive_and_odd_tokens_are_401_json(token_gw, trained):
    for scheme in ("bearer", "BEARER", "Bearer"):
        r = httpx.get(f"{token_gw.url}/function/train/algorithms", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200, scheme
    for path in ("/function/train/algorithms", "/v2/models/iris", "/metrics"):
        r = httpx.get(token_gw.url + path, headers={"Authorization": "Bearer t\u00e9".encode()})
        assert r.status_code == 401 and r.headers["content-type"] == "application/json", (path, r.text)
        r = httpx.get(token_gw.url + path, headers={"Authorization": b"Bearer \xff\xfe"})
        assert r.status_code == 401, path


# ---- methods, HEAD, paths, the server's own errors ------------------------------------------------------
@pytest.mark.parametrize(
    "method,path",
    [("POST", "/metrics"), ("DELETE", "/healthz"), ("POST", "/ui/index.html"), ("PUT", "/ui/"), ("POST", "/")],
)
def test_wrong_methods_are_405_json_with_allow(open_gw, method, path):
    r = httpx.request(method, open_gw.url + path)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed", r.text
    assert "GET" in r.headers["allow"]


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/function/train/algorithms", "/function/upload", "/v2/health/live", "/metrics", "/ui/", "/ui/app.js"],
)
def test_head_answers_like_get_without_a_body(open_gw, path):
    get, head = httpx.get(open_gw.url + path), httpx.head(open_gw.url + path)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_an_empty_path_segment_is_a_json_404(open_gw):
    for method in ("POST", "GET"):
        r = httpx.request(method, f"{open_gw.url}/function//upload")
        assert r.status_code == 404 and r.json()["error"]["code"] == "route_not_found"


def test_invalid_http_gets_a_json_400(open_gw):
    out = raw(open_gw.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad header line\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert b'"invalid_http_request"' in body


def test_online_predictions_with_the_read_token_on_one_connection(token_gw, trained):
    """The loop fast path behind the edge: 300 online predictions with the read token, keep-alive (a
    sanity bound only; throughput is measured by `make bench`)."""
    with httpx.Client(base_url=token_gw.url, headers=bearer(READ_TOKEN)) as c:
        body = {"model_id": trained["model"], "instances": [ROW]}
        c.post("/function/predict", json=body)
        started = time.monotonic()
        for _ in range(300):
            assert c.post("/function/predict", json=body).status_code == 200
        assert time.monotonic() - started < 15
