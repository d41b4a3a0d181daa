"""Contract tests for every protocol route (V2, KServe V1, MLflow): good and bad input, never a 5xx, the
protocol's own error shape, and the same answer at the gateway root, under ``/function/predict``, through
the OpenFaaS template and through the Kubeless runtime's event (see test_runtime_adapters.py)."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker
from kubepredict.runtimes.gateway import Gateway
from tests.unit.test_runtime_adapters import IRIS, JSON, openfaas_apps, svc, via_kubeless, via_openfaas  # noqa: F401 - fixtures

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]


def tensor(name, shape, datatype, data):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


COLUMNS = {"inputs": [tensor(f, [1], "FP32", [v]) for f, v in zip(FEATURES, ROW, strict=True)], "id": "c1"}
MATRIX = {"inputs": [tensor("input-0", [2, 4], "FP64", [ROW, [6.7, 3.0, 5.2, 2.3]])]}


@pytest.fixture(scope="module")
def served(svc):  # noqa: F811 - the fixture imported above
    gw = Client(Gateway(svc))
    ds = gw.post("/function/upload", query_string={"name": "iris"}, data=IRIS, headers={"Content-Type": "text/csv"})
    queued = gw.post(
        "/function/train",
        json={
            "dataset_id": ds.get_json()["dataset_id"],
            "target": "species",
            "algorithm": "logistic_regression",
            "name": "iris",
        },
    ).get_json()
    assert run_worker(svc, queued["job_id"]) == 0
    pending = gw.post(
        "/function/train", json={"dataset_id": ds.get_json()["dataset_id"], "target": "species", "name": "pending"}
    ).get_json()  # queued, never run: not ready
    return {"model_id": queued["model_id"], "pending": pending["model_id"]}


def body_of(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


# (method, path, body, headers, status, what the answer must hold)
# On the embedded gateway, JSON bodies need a JSON Content-Type (V2 infer also takes none: Triton's client
# sends none); the adapters parse JSON whatever the type says. Cases without a type are V2's.
CASES = [
    ("GET", "/v2/health/live", b"", {}, 200, {"live": True}),
    ("GET", "/v2/health/ready", b"", {}, 200, {"ready": True}),
    ("GET", "/v2", b"", {}, 200, {"name": "kubepredict"}),
    ("GET", "/v2/models/iris", b"", {}, 200, {"name": "iris", "versions": ["1"]}),
    ("GET", "/v2/models/{model_id}", b"", {}, 200, {"name": "iris"}),
    ("GET", "/v2/models/iris/versions/1", b"", {}, 200, {"name": "iris"}),
    ("GET", "/v2/models/iris/versions/7", b"", {}, 404, None),
    ("GET", "/v2/models/iris/versions/x", b"", {}, 400, None),
    ("GET", "/v2/models/no-such", b"", {}, 404, None),
    ("GET", "/v2/models/iris/ready", b"", {}, 200, {"name": "iris", "ready": True}),
    ("GET", "/v2/models/no-such/ready", b"", {}, 404, None),
    ("GET", "/v2/models/{pending}/ready", b"", {}, 409, None),
    ("POST", "/v2/models/iris/infer", COLUMNS, {}, 200, {"model_name": "iris", "id": "c1"}),
    ("POST", "/v2/models/iris/infer", COLUMNS, JSON, 200, {"model_name": "iris", "id": "c1"}),
    ("POST", "/v2/models/iris/versions/1/infer", MATRIX, {}, 200, {"model_version": "1"}),
    ("POST", "/v2/models/iris/infer", {**MATRIX, "parameters": {"content_type": "np"}}, {}, 200, {}),
    ("POST", "/v2/models/iris/infer", b"{not json", {}, 400, None),
    ("POST", "/v2/models/iris/infer", b"", {}, 400, None),
    ("POST", "/v2/models/iris/infer", [1, 2], {}, 400, None),
    ("POST", "/v2/models/iris/infer", {"inputs": [tensor("input-0", [1, 3], "FP64", ROW[:3])]}, {}, 400, None),
    ("POST", "/v2/models/iris/infer", {"inputs": [tensor("petals", [1], "FP64", [1.0])]}, {}, 400, None),
    ("POST", "/v2/models/iris/infer", {"inputs": [tensor("sepal_length", [1], "FP8", [1.0])]}, {}, 400, None),
    ("POST", "/v2/models/iris/infer", {"inputs": [tensor("sepal_length", [1], "FP64", ["long"])]}, {}, 400, None),
    ("POST", "/v2/models/iris/infer", {"inputs": COLUMNS["inputs"][:2]}, {}, 400, None),
    (
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [tensor("sepal_length", [1], "BYTES", ["long"])] + COLUMNS["inputs"][1:]},
        {},
        400,
        None,
    ),
    (
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [tensor("input-0", [10_001, 4], "FP64", ROW * 10_001)]},
        {},
        413,
        None,
    ),
    ("POST", "/v2/models/iris/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, 400, None),
    ("POST", "/v2/models/iris/infer", COLUMNS, {"Content-Encoding": "gzip"}, 415, None),
    ("POST", "/v2/models/no-such/infer", COLUMNS, {}, 404, None),
    ("POST", "/v2/models/{pending}/infer", COLUMNS, {}, 409, None),
    ("DELETE", "/v2/models/iris/infer", b"", {}, 405, None),
    ("GET", "/v2/models/iris/explain", b"", {}, 404, None),
    ("GET", "/v1/models/iris", b"", {}, 200, {"name": "iris", "ready": True}),
    ("GET", "/v1/models/no-such", b"", {}, 404, None),
    ("POST", "/v1/models/iris:predict", {"instances": [ROW]}, JSON, 200, {"predictions": ["setosa"]}),
    (
        "POST",
        "/v1/models/iris:predict",
        {"instances": [dict(zip(FEATURES, ROW, strict=True))]},
        JSON,
        200,
        {"predictions": ["setosa"]},
    ),
    ("POST", "/v1/models/iris:predict", {"instances": [ROW[:3]]}, JSON, 400, None),
    ("POST", "/v1/models/iris:predict", {"rows": [ROW]}, JSON, 400, None),
    ("POST", "/v1/models/iris:predict", b"{not json", JSON, 400, None),
    ("POST", "/v1/models/iris:predict", {"instances": [ROW]}, {"Content-Type": "text/csv"}, 415, None),
    ("POST", "/v1/models/iris:explain", {"instances": [ROW]}, JSON, 404, None),
    ("POST", "/v1/models/no-such:predict", {"instances": [ROW]}, JSON, 404, None),
    (
        "POST",
        "/models/iris/invocations",
        {"dataframe_split": {"columns": FEATURES, "data": [ROW]}},
        JSON,
        200,
        {"predictions": ["setosa"]},
    ),
    (
        "POST",
        "/models/iris/invocations",
        {"inputs": {f: [v] for f, v in zip(FEATURES, ROW, strict=True)}},
        JSON,
        200,
        {"predictions": ["setosa"]},
    ),
    (
        "POST",
        "/models/iris/invocations",
        (",".join(FEATURES) + "\n" + ",".join(map(str, ROW)) + "\n").encode(),
        {"Content-Type": "text/csv"},
        200,
        {"predictions": ["setosa"]},
    ),
    ("POST", "/models/iris/invocations", b"a,b\n1\n", {"Content-Type": "text/csv"}, 400, None),
    (
        "POST",
        "/models/iris/invocations",
        {"dataframe_split": {"columns": FEATURES, "data": [ROW[:3]]}},
        JSON,
        400,
        None,
    ),
    (
        "POST",
        "/models/iris/invocations",
        {"instances": [dict(zip(FEATURES, ROW, strict=True))], "extra": 1},
        JSON,
        400,
        None,
    ),
    ("POST", "/models/iris/invocations", {"dataframe_records": [{"sepal_length": "long"}]}, JSON, 400, None),
    ("POST", "/models/iris/invocations", b"<x/>", {"Content-Type": "application/xml"}, 415, None),
    ("POST", "/models/no-such/invocations", {"instances": [ROW]}, JSON, 404, None),
    ("POST", "/invocations", {"instances": [ROW]}, JSON, 404, None),  # KUBEPREDICT_DEFAULT_MODEL unset
    ("GET", "/models/iris/ping", b"", {}, 200, None),
    ("GET", "/models/no-such/health", b"", {}, 404, None),
    ("GET", "/ping", b"", {}, 200, None),
    ("GET", "/health", b"", {}, 200, None),
    ("GET", "/version", b"", {}, 200, None),
    ("GET", "/invocations", b"", {}, 405, None),
]


def error_shape(path: str, body: dict) -> None:
    if path.startswith(("/v2", "/v1")):
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    else:
        assert set(body) == {"error_code", "message"} and body["message"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} {c[1]} {c[4]}-{i}" for i, c in enumerate(CASES)])
def test_route_contract_on_every_runtime(svc, openfaas_apps, served, case):  # noqa: F811 - the fixture imported above
    method, path, body, headers, status, holds = case
    path = path.format(**served)
    raw = body_of(body)
    root = Client(Gateway(svc)).open(path, method=method, data=raw, headers=headers)
    answers = {
        "gateway root": (root.status_code, root.headers.get("Content-Type"), root.get_data()),
        "gateway /function/predict": _gateway_function(svc, method, path, raw, headers),
        "openfaas": via_openfaas(openfaas_apps, method, "predict", path, raw, headers),
    }
    if not (headers.get("Content-Type") == "application/json" and raw.startswith(b"{not")):
        answers["kubeless"] = via_kubeless(method, "predict", path, raw, headers)
    first = answers["gateway root"]
    for where, answer in answers.items():
        assert answer[0] == status, (where, answer)
        assert answer[1].split(";")[0] == first[1].split(";")[0], where
        assert answer[2] == first[2], (where, answer[2][:300], first[2][:300])
    if first[1].startswith("application/json"):
        out = json.loads(first[2])
        if status >= 400:
            error_shape(path, out)
        for key, value in (holds or {}).items():
            assert out[key] == value, (key, out)


def _gateway_function(services, method, path, raw, headers):
    r = Client(Gateway(services)).open("/function/predict" + path, method=method, data=raw, headers=headers)
    return r.status_code, r.headers.get("Content-Type"), r.get_data()


def test_v2_infer_answer_matches_native(svc, served):  # noqa: F811 - the fixture imported above
    gw = Client(Gateway(svc))
    v2 = gw.post("/v2/models/iris/infer", json=MATRIX).get_json()
    rows = [dict(zip(FEATURES, r, strict=True)) for r in MATRIX["inputs"][0]["data"]]
    ref = gw.post("/function/predict", json={"model_id": "iris", "instances": rows}).get_json()
    assert ref["model_id"] == served["model_id"]
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["predict"] == {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ref["predictions"]}
    proba = outputs["predict_proba"]
    assert proba["shape"] == [2, 3] and proba["parameters"] == {"classes": ref["classes"]}
    assert proba["data"] == [p for row in ref["probabilities"] for p in row]


def test_default_model_and_auth(svc, served):  # noqa: F811 - the fixture imported above
    """``KUBEPREDICT_DEFAULT_MODEL`` names /invocations' model; the token guards data routes, not health."""
    settings = Settings.from_env(
        {
            "KUBEPREDICT_DATA_DIR": str(svc.settings.data_dir),
            "KUBEPREDICT_DEFAULT_MODEL": "iris",
            "KUBEPREDICT_API_TOKEN": "s3cret",
        }
    )
    assert settings.default_model == "iris"
    gw = Client(Gateway(bootstrap(settings)))
    auth = {"Authorization": "Bearer s3cret"}
    split = {"dataframe_split": {"columns": FEATURES, "data": [ROW]}}
    assert gw.post("/invocations", json=split, headers=auth).get_json() == {"predictions": ["setosa"]}
    r = gw.post("/invocations", json=split)
    assert r.status_code == 401 and r.get_json()["error_code"] == "UNAUTHENTICATED"
    r = gw.post("/v2/models/iris/infer", json=COLUMNS)
    assert r.status_code == 401 and set(r.get_json()) == {"error"}
    assert gw.post("/v2/models/iris/infer", json=COLUMNS, headers=auth).status_code == 200
    for open_path in ("/v2/health/live", "/v2/health/ready", "/ping", "/health", "/version"):
        assert gw.get(open_path).status_code == 200, open_path
    for guarded in (
        "/v2/models/iris",
        "/v2/models/iris/ready",
        "/v1/models/iris",
        "/models/iris/ping",
        "/function/predict/v2/models/iris",
    ):
        assert gw.get(guarded).status_code == 401, guarded
    unset = Gateway(bootstrap(Settings(data_dir=svc.settings.data_dir, default_model="no-such")))
    r = Client(unset).post("/invocations", json=split)
    assert r.status_code == 404 and r.get_json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert Client(unset).get("/ping").status_code == 404  # MLflow: /ping fails while its model is missing
