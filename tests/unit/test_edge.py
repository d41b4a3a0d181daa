"""The edge's checks without a server (runtimes/edge.py): which access a route needs, which Host names
are answered, how a bearer token is read, and the settings behind them."""

from __future__ import annotations

import pytest

from kubepredict.config import Settings
from kubepredict.errors import ConfigError
from kubepredict.runtimes.edge import OPEN, READ, WRITE, Edge, required


def edge(**env) -> Edge:
    return Edge(Settings.from_env({f"KUBEPREDICT_{k.upper()}": v for k, v in env.items()}))


@pytest.mark.parametrize(
    "method,path,need",
    [
        ("GET", "/healthz", OPEN),
        ("HEAD", "/healthz", OPEN),
        ("GET", "/", OPEN),
        ("GET", "/ui/", OPEN),
        ("GET", "/ui/app.js", OPEN),
        ("GET", "/openapi.json", OPEN),
        ("GET", "/v2/health/live", OPEN),
        ("GET", "/v2/health/ready", OPEN),
        ("GET", "/v2", OPEN),
        ("GET", "/ping", OPEN),
        ("GET", "/health", OPEN),
        ("GET", "/version", OPEN),
        ("HEAD", "/v2/health/live", OPEN),
        ("GET", "/ui/../function/upload", READ),
        ("GET", "/ui/./x", READ),
        ("GET", "/healthz/", READ),
        ("POST", "/v2/health/live", READ),  # not the public route: a token first, then 405
        ("GET", "/metrics", READ),
        ("GET", "/system/functions", READ),
        ("GET", "/function/upload", READ),
        ("GET", "/function/result/job_1", READ),
        ("HEAD", "/function/result/job_1", READ),
        ("POST", "/function/predict", READ),
        ("POST", "/function/predict.kubepredict", READ),
        ("POST", "/function/predict/v2/models/m/infer", READ),
        ("POST", "/v2/models/m/infer", READ),
        ("POST", "/v1/models/m:predict", READ),
        ("POST", "/invocations", READ),
        ("GET", "/v2/models/m", READ),
        ("GET", "/models/m/version", READ),
        ("GET", "/no/such/route", READ),
        ("PUT", "/function/upload", WRITE),  # PUT writes (an alias move): a read token is refused first
        ("PUT", "/function/train/iris/aliases/champion", WRITE),
        ("POST", "/function/train/import", WRITE),
        ("POST", "/function/upload", WRITE),
        ("POST", "/function/train", WRITE),
        ("POST", "/function//upload", WRITE),
        ("DELETE", "/function/upload/ds_1", WRITE),
        ("DELETE", "/function/result/job_1", WRITE),
        ("DELETE", "/function/predict", WRITE),
        ("POST", "/async-function/predict", WRITE),
        ("GET", "/async-function/result", WRITE),
    ],
)
def test_what_each_route_needs(method, path, need):
    assert required(method, path) == need


def test_tokens_grant_write_read_or_nothing():
    e = edge(api_token="w-token", read_token="r-token")
    assert e.grant(b"Bearer w-token") == WRITE and e.grant(b"bearer w-token") == WRITE
    assert e.grant(b"BEARER   r-token ") == READ
    for bad in (
        b"",
        b"Bearer",
        b"Bearer ",
        b"Basic w-token",
        b"w-token",
        b"Bearer w-token2",
        b"Bearer t\xc3\xa9",
        b"Bearer \xff",
        b"Bearer r-token w-token",
    ):
        assert e.grant(bad) == OPEN, bad
    assert edge().grant(b"") == WRITE  # open mode


def test_a_refusal_is_json_and_closes_the_connection():
    e = edge(api_token="w-token", read_token="r-token", max_upload_bytes="1000")

    def check(method, path, auth=b"", length=0):
        return e.check(method, path, "127.0.0.1:8080", auth, "", length, False)

    r = check("GET", "/function/upload")
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer" and "Connection" not in r.headers
    r = check("POST", "/function/upload", b"", 10)
    assert r.status == 401 and r.headers["Connection"] == "close"  # a body that is never read
    assert check("POST", "/function/upload", b"", None).headers["Connection"] == "close"  # chunked
    r = check("POST", "/function/upload", b"Bearer r-token")
    assert r.status == 403 and b"read_only_token" in r.body
    r = check("GET", "/v2/models/m")
    assert r.status == 401 and r.body.startswith(b'{"error":"')  # the protocol's own error shape
    assert check("POST", "/function/upload", b"Bearer w-token", 1000 + 1024 * 1024 + 1).status == 413  # + framing
    assert check("POST", "/function/upload", b"Bearer w-token", 1000 + 1024 * 1024) == WRITE
    assert check("GET", "/function/upload", b"Bearer r-token", 10**12) == READ  # no body on GET: not its business


def test_open_mode_host_names():
    e = edge()
    for host in ("localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:8080", "[::1]:8080", "[::1]"):
        assert e.host_allowed(host), host
    for host in (
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "10.0.0.5:8080",
        "[::1",
        "",
    ):
        assert not e.host_allowed(host), host
    wildcard = edge(host="0.0.0.0")
    assert wildcard.host_allowed("10.0.0.5:8080") and wildcard.host_allowed("[fe80::1]:80")
    assert not wildcard.host_allowed("kubepredict.internal:8080")
    listed = edge(allowed_hosts="kp.example.org, .corp.example")
    assert listed.host_allowed("kp.example.org:443") and listed.host_allowed("a.corp.example")
    assert listed.host_allowed("localhost") and not listed.host_allowed("corp.example.evil")
    assert edge(allowed_hosts="*").any_host and edge(api_token="t").any_host
    assert not edge(api_token="t", allowed_hosts="kp.example.org").any_host


def test_origins():
    e = edge(cors_origins="https://page.example, http://localhost:3000/")
    assert e.cors_for("https://page.example") and e.cors_for("http://localhost:3000")
    assert e.cors_for("https://other.example") is None and e.cors_for("") is None
    assert e.origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080")  # the page served by the gateway itself
    assert not e.origin_allowed("null", "127.0.0.1:8080")
    pre = e.check("OPTIONS", "/function/train", "127.0.0.1:8080", b"", "https://page.example", 0, True)
    assert pre.status == 204 and "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert e.check("OPTIONS", "/function/train", "127.0.0.1:8080", b"", "https://x.example", 0, True).status == 403


def test_settings():
    s = Settings.from_env({"KUBEPREDICT_ALLOWED_HOSTS": " a.example ,, b.example ", "KUBEPREDICT_CORS_ORIGINS": ""})
    assert s.allowed_hosts == ("a.example", "b.example") and s.cors_origins == ()
    assert (s.max_connections, s.header_timeout_seconds, s.body_timeout_seconds, s.keep_alive_seconds) == (
        1000,
        10,
        30,
        5,
    )
    with pytest.raises(ConfigError, match="needs KUBEPREDICT_API_TOKEN"):
        Settings.from_env({"KUBEPREDICT_READ_TOKEN": "r"})
    with pytest.raises(ConfigError, match="differ"):
        Settings.from_env({"KUBEPREDICT_READ_TOKEN": "same", "KUBEPREDICT_API_TOKEN": "same"})
