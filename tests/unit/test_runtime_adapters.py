"""The same neutral functions answer identically through the gateway, OpenFaaS python3-http and Kubeless.

OpenFaaS: the project's template ``index.py`` (ASGI, ``format_response``) is imported with each
function's real ``handler.py`` as ``function.handler`` and driven with Flask's test client, as
of-watchdog would forward the call (path relative to the function). Kubeless: the event dict the
python runtime builds (``data`` parsed only for an exact ``application/json``, a bottle request in
``extensions``), and the returned ``bottle.HTTPResponse`` read as bottle would send it.
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import sys
from pathlib import Path

import bottle
import pytest
from a2wsgi import ASGIMiddleware
from werkzeug.test import Client

from kubepredict.bootstrap import bootstrap, set_default_app
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker
from kubepredict.runtimes.gateway import Gateway

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template" / "kubepredict-python3-http" / "index.py"
IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    services = bootstrap(Settings(data_dir=tmp_path_factory.mktemp("rt")))
    set_default_app(services)
    yield services
    set_default_app(None)


@pytest.fixture(scope="module")
def openfaas_apps(tmp_path_factory):
    """One template app per function, built from the template exactly as the image would run it."""
    apps = {}
    for name in ("upload", "train", "predict", "result"):
        ctx = tmp_path_factory.mktemp(f"of-{name}")
        (ctx / "function").mkdir()
        (ctx / "function" / "__init__.py").write_text("")
        shutil.copy(REPO / "functions" / name / "handler.py", ctx / "function" / "handler.py")
        shutil.copy(TEMPLATE, ctx / "index.py")
        for mod in ("function", "function.handler", "index"):
            sys.modules.pop(mod, None)
        sys.path.insert(0, str(ctx))
        try:
            # The template's ASGI app behind a WSGI adapter, so werkzeug's test client can call it.
            apps[name] = Client(ASGIMiddleware(importlib.import_module("index").app))
        finally:
            sys.path.remove(str(ctx))
            for mod in ("function", "function.handler", "index"):
                sys.modules.pop(mod, None)
    return apps


def via_gateway(svc, method, name, path, body=b"", headers=None, query=None):
    r = Client(Gateway(svc)).open(
        f"/function/{name}{path}", method=method, data=body, headers=headers or {}, query_string=query or {}
    )
    return r.status_code, r.headers.get("Content-Type"), r.get_data()


def via_openfaas(apps, method, name, path, body=b"", headers=None, query=None):
    r = apps[name].open(path or "/", method=method, data=body, headers=headers or {}, query_string=query or {})
    return r.status_code, r.headers.get("Content-Type"), r.get_data()


def via_kubeless(method, name, path, body=b"", headers=None, query=None):
    from urllib.parse import urlencode

    headers = headers or {}
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path or "/",
        "QUERY_STRING": urlencode(query or {}),
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "fn",
        "SERVER_PORT": "8080",
        "wsgi.url_scheme": "http",
    }
    for k, v in headers.items():
        if k.lower() == "content-type":
            environ["CONTENT_TYPE"] = v
        else:
            environ["HTTP_" + k.upper().replace("-", "_")] = v
    req = bottle.BaseRequest(environ)
    data = body
    if req.get_header("content-type") == "application/json":  # exact string match, as the runtime does
        data = json.loads(body)
    event = {
        "data": data,
        "event-id": req.get_header("event-id"),
        "event-type": req.get_header("event-type"),
        "event-time": req.get_header("event-time"),
        "event-namespace": req.get_header("event-namespace"),
        "extensions": {"request": req},
    }
    module = importlib.import_module(f"functions.{name}.handler")
    out = module.handler(event, {"function-name": name, "timeout": 180.0, "runtime": "python3.11", "memory-limit": "0"})
    assert isinstance(out, bottle.HTTPResponse)
    body_out = out.body if isinstance(out.body, bytes) else "".join(out.body).encode()
    return out.status_code, out.headers.get("Content-Type"), body_out


def all_three(svc, apps, *args, **kw):
    return via_gateway(svc, *args, **kw), via_openfaas(apps, *args, **kw), via_kubeless(*args, **kw)


JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def trained(svc, openfaas_apps):
    status, _, body = via_gateway(svc, "POST", "upload", "/", IRIS, {"Content-Type": "text/csv"}, {"name": "iris"})
    ds = json.loads(body)
    status, _, body = via_gateway(
        svc,
        "POST",
        "train",
        "/",
        json.dumps({"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "logistic_regression"}).encode(),
        JSON,
    )
    q = json.loads(body)
    assert run_worker(svc, q["job_id"]) == 0
    status, _, body = via_gateway(
        svc,
        "POST",
        "predict",
        "/",
        json.dumps({"model_id": q["model_id"], "dataset_id": ds["dataset_id"]}).encode(),
        JSON,
    )
    p = json.loads(body)
    assert run_worker(svc, p["job_id"]) == 0
    return {"ds": ds, "model_id": q["model_id"], "train_job": q["job_id"], "predict_job": p["job_id"]}


IDENTICAL = [
    ("GET", "train", "/algorithms", b"", None, None),
    ("GET", "train", "/algorithms", b"", None, {"task": "regression"}),
    ("GET", "upload", "/", b"", None, {"limit": "5"}),
    ("GET", "upload", "/{ds}", b"", None, None),
    ("GET", "train", "/{model}", b"", None, None),
    ("GET", "result", "/{predict_job}", b"", None, {"limit": "3", "offset": "2"}),
    ("GET", "result", "/{predict_job}", b"", None, {"format": "csv"}),
    ("GET", "result", "/job_missing", b"", None, None),
    ("GET", "result", "/{predict_job}", b"", None, {"limit": "x"}),
    ("POST", "upload", "/", b"a,a\n1,2\n", {"Content-Type": "text/csv"}, None),
    ("POST", "upload", "/", b"{}", JSON, None),
    ("POST", "train", "/", b"{not json", JSON, None),
    ("POST", "train", "/", b'{"dataset_id": "ds_none", "target": "y"}', JSON, None),
    (
        "POST",
        "train",
        "/",
        b'{"dataset_id": "ds_none", "target": "y"}',
        {"Content-Type": "application/json; charset=utf-8"},
        None,
    ),
    ("POST", "predict", "/", None, JSON, None),  # online body filled in below
    ("DELETE", "upload", "/ds_missing", b"", None, None),
    ("DELETE", "result", "/{train_job}", b"", None, None),
    ("POST", "result", "/{train_job}", b"", None, None),
]


@pytest.mark.parametrize("case", IDENTICAL, ids=[f"{c[0]} {c[1]}{c[2]} {c[5] or ''}" for c in IDENTICAL])
def test_identical_answers(svc, openfaas_apps, trained, case):
    method, name, path, body, headers, query = case
    path = path.format(
        ds=trained["ds"]["dataset_id"],
        model=trained["model_id"],
        predict_job=trained["predict_job"],
        train_job=trained["train_job"],
    )
    if body is None:
        body = json.dumps(
            {
                "model_id": trained["model_id"],
                "instances": [
                    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
                    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
                ],
            }
        ).encode()
    if (headers or {}).get("Content-Type") == "application/json" and body.startswith(b"{not"):
        # The Kubeless runtime parses exact application/json itself and answers bottle's own 400 page before
        # any function runs; only the gateway and OpenFaaS reach our JSON error (see README, Kubeless).
        gw, of = (
            via_gateway(svc, method, name, path, body, headers, query),
            via_openfaas(openfaas_apps, method, name, path, body, headers, query),
        )
        assert gw == of and gw[0] == 400
        return
    gw, of, kl = all_three(svc, openfaas_apps, method, name, path, body, headers, query)
    assert gw[0] == of[0] == kl[0], (gw, of, kl)
    assert gw[1].split(";")[0] == of[1].split(";")[0] == kl[1].split(";")[0]
    assert gw[2] == of[2] == kl[2]
    if gw[0] >= 400:
        assert json.loads(gw[2])["error"]["code"]


def test_creates_answer_alike(svc, openfaas_apps, trained):
    """Creating calls give the same status and shape (ids differ by design)."""
    answers = all_three(svc, openfaas_apps, "POST", "upload", "/", IRIS, {"Content-Type": "text/csv"}, {"name": "x"})
    bodies = [json.loads(a[2]) for a in answers]
    assert {a[0] for a in answers} == {201}
    assert len({b["dataset_id"] for b in bodies}) == 3
    strip = [{k: v for k, v in b.items() if k not in ("dataset_id", "created_at")} for b in bodies]
    assert strip[0] == strip[1] == strip[2]
    train = json.dumps({"dataset_id": trained["ds"]["dataset_id"], "target": "species"}).encode()
    answers = all_three(svc, openfaas_apps, "POST", "train", "/", train, JSON)
    assert {a[0] for a in answers} == {202}
    assert all(set(json.loads(a[2])) == {"job_id", "model_id", "status"} for a in answers)


def test_text_plain_json_is_parsed_except_from_a_page_on_the_embedded_gateway(svc, openfaas_apps, trained):
    """faas-cli and Kubeless triggers label JSON text/plain: every runtime parses it; the embedded gateway
    answers 415 when a browser sent it (a page can send text/plain to another site without asking first)."""
    train = json.dumps({"dataset_id": trained["ds"]["dataset_id"], "target": "species"}).encode()
    answers = all_three(svc, openfaas_apps, "POST", "train", "/", train, {"Content-Type": "text/plain"})
    assert [a[0] for a in answers] == [202, 202, 202]
    page = {"Content-Type": "text/plain", "Sec-Fetch-Mode": "no-cors"}
    gateway, openfaas, kubeless = all_three(svc, openfaas_apps, "POST", "train", "/", train, page)
    assert (openfaas[0], kubeless[0]) == (202, 202)
    assert gateway[0] == 415 and json.loads(gateway[2])["error"]["code"] == "unsupported_media_type"


def test_kubeless_form_encoded_kafka_trigger_body_is_parsed(svc, trained):
    """Kubeless's Kafka trigger posts non-object JSON as form-encoded bytes; we parse JSON anyway."""
    body = json.dumps({"dataset_id": trained["ds"]["dataset_id"], "target": "species"}).encode()
    status, _, out = via_kubeless(
        "POST",
        "train",
        "/",
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "event-id": "abc123",
            "event-namespace": "kafkatriggers.kubeless.io",
        },
    )
    assert status == 202 and json.loads(out)["job_id"].startswith("job_")


def test_idempotency_key_returns_the_same_job_on_every_runtime(svc, openfaas_apps, trained):
    body = json.dumps({"dataset_id": trained["ds"]["dataset_id"], "target": "species"}).encode()
    headers = {**JSON, "Idempotency-Key": "same-key-1"}
    answers = all_three(svc, openfaas_apps, "POST", "train", "/", body, headers)
    assert len({json.loads(a[2])["job_id"] for a in answers}) == 1


def test_the_adapters_check_the_tokens_like_the_embedded_gateway(tmp_path, svc, openfaas_apps):
    """OpenFaaS's and Kubeless's gateways do not check our token: with one set, the function does."""
    tokened = bootstrap(Settings(data_dir=tmp_path, api_token="s3cret", read_token="r3ad"))
    set_default_app(tokened)
    try:
        for via in (lambda *a, **k: via_openfaas(openfaas_apps, *a, **k), via_kubeless):
            status, _, out = via("GET", "upload", "/")
            assert status == 401 and json.loads(out)["error"]["code"] == "unauthorized"
            assert via("GET", "upload", "/", headers={"Authorization": "Bearer s3cret"})[0] == 200
            assert via("GET", "upload", "/", headers={"Authorization": "bearer r3ad"})[0] == 200  # reads
            status, _, out = via(
                "POST", "upload", "/", IRIS, {"Authorization": "Bearer r3ad", "Content-Type": "text/csv"}, {"name": "x"}
            )
            assert status == 403 and json.loads(out)["error"]["code"] == "read_only_token"
            assert via("GET", "upload", "/", headers={"Authorization": "Bearer té"})[0] == 401
            assert via("GET", "predict", "/v2/health/live")[0] == 200  # health stays open
    finally:
        set_default_app(svc)
        tokened.catalog.dispose()


def test_only_the_runtime_adapters_fall_back_to_the_process_app(monkeypatch):
    """Functions need their App passed; an adapter builds the process's own, and a failure to build it
    is the call's JSON error, not a traceback."""
    from kubepredict import bootstrap as bootstrap_module
    from kubepredict import errors
    from kubepredict.api import FUNCTIONS
    from kubepredict.api.http import Request
    from kubepredict.runtimes import kubeless, openfaas

    with pytest.raises(TypeError):
        FUNCTIONS["result"](Request.build("GET", "/"))  # no hidden default

    def unreachable(*args, **kwargs):
        raise errors.BackendUnavailable("catalogue unreachable")

    set_default_app(None)
    monkeypatch.setattr(bootstrap_module, "bootstrap", unreachable)
    event = type("E", (), {"method": "GET", "path": "/", "query": None, "headers": {}, "body": b""})()
    body, status, headers = openfaas.adapt(FUNCTIONS["result"])(event, None)
    assert status == 503 and json.loads(body)["error"]["message"] == "catalogue unreachable"
    response = kubeless.adapt(FUNCTIONS["result"])({"data": b""}, {})
    assert response.status_code == 503 and json.loads(response.body)["error"]["code"]
