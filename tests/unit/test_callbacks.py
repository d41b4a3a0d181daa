"""CallbackPolicy: allow-list matching, refusal of metadata / link-local addresses at call time, pinned connects."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from kubepredict import errors
from kubepredict.runtimes.callbacks import CallbackPolicy, parse_hosts


def _resolving(monkeypatch, table: dict[str, list[str]]):
    real = socket.getaddrinfo

    def fake(host, port, *args, **kw):
        if host in table:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in table[host]
            ]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_allow_list_entries_match_names_ports_and_subdomains():
    policy = CallbackPolicy("hooks.example.com, api.example.org:8443, *.corp.test, [::1]:9000, 10.0.0.5", 5)
    assert policy.check("https://hooks.example.com/x").port == 443
    assert policy.check("https://HOOKS.example.com./x").host == "hooks.example.com"
    assert policy.check("https://api.example.org:8443/x")
    assert policy.check("http://a.b.corp.test/x")
    assert policy.check("http://[::1]:9000/x")
    assert policy.check("http://10.0.0.5:1234/x")
    for url in (
        "https://api.example.org/x",
        "http://corp.test/x",
        "http://evilcorp.test/x",
        "http://[::1]:9001/x",
        "http://hooks.example.com.evil.test/x",
        "http://10.0.0.6/x",
    ):
        with pytest.raises(errors.CallbackRefused):
            policy.check(url)
    with pytest.raises(errors.ConfigError):
        parse_hosts("host:notaport")


def test_empty_allow_list_refuses_everything():
    with pytest.raises(errors.CallbackRefused, match="KUBEPREDICT_CALLBACK_HOSTS"):
        CallbackPolicy("", 5).check("https://hooks.example.com/x")


def test_a_listed_name_resolving_to_a_metadata_address_is_not_called(monkeypatch):
    """DNS rebinding: the name passed the submit check; at call time it resolves to link-local."""
    policy = CallbackPolicy("hooks.example.com", 5)
    target = policy.check("http://hooks.example.com/cb")
    for addresses in (
        ["169.254.169.254"],
        ["203.0.113.7", "169.254.10.1"],
        ["fe80::1"],
        ["fd00:ec2::254"],
        ["::ffff:169.254.169.254"],
        ["100.100.100.200"],
    ):
        _resolving(monkeypatch, {"hooks.example.com": addresses})
        with pytest.raises(errors.CallbackRefused):
            policy.resolve(target)
        with pytest.raises(errors.CallbackRefused):
            policy.post("http://hooks.example.com/cb", b"{}", {})


def test_the_callback_goes_to_the_checked_address_with_the_name_as_host(monkeypatch):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.headers["Host"], self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        _resolving(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
        status = CallbackPolicy("hooks.example.com", 5).post(
            f"http://hooks.example.com:{port}/cb?x=1", b"hi", {"X-Call-Id": "c1"}
        )
        assert status == 204 and seen == [(f"hooks.example.com:{port}", "/cb?x=1", b"hi")]
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_callback_target_is_given_up_after_the_timeout():
    import time

    import httpx

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            release.wait(10)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            CallbackPolicy("127.0.0.1", 0.5).post(f"http://127.0.0.1:{server.server_port}/cb", b"{}", {})
        assert time.monotonic() - started < 3
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    import subprocess

    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def test_https_callbacks_pinned_to_the_address_still_verify_the_name(tmp_path, monkeypatch):
    import ssl

    import httpx

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    for served_name, expect_ok in (("hooks.example.com", True), ("other.example.com", False)):
        cert, key = _self_signed(tmp_path, served_name)
        server = HTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            _resolving(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
            policy = CallbackPolicy("hooks.example.com", 5, verify=ssl.create_default_context(cafile=cert))
            url = f"https://hooks.example.com:{server.server_port}/cb"
            if expect_ok:
                assert policy.post(url, b"{}", {}) == 200 and seen == [f"hooks.example.com:{server.server_port}"]
            else:  # the address is pinned, the certificate is still checked against the name
                with pytest.raises(httpx.ConnectError, match="certificate"):
                    policy.post(url, b"{}", {})
        finally:
            server.shutdown()
            server.server_close()
