"""A corpus of malformed requests: each gets its documented 4xx JSON error, never a 5xx; nothing is damaged."""

from __future__ import annotations

import json

import pytest
from sklearn.datasets import load_iris

from tests.e2e.api import Api, frame_csv

pytestmark = pytest.mark.e2e
CSV = {"Content-Type": "text/csv"}
JSONH = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def world(gateway_url):
    api = Api(gateway_url)
    frame = load_iris(as_frame=True).frame
    ds = api.upload(frame_csv(frame), "iris-bad-input")
    one_class = api.upload("a,b\n1,x\n2,x\n3,x\n4,x\n5,x\n", "one-class")
    partial = api.upload("sepal length (cm),other\n1,2\n", "partial")
    q = api.train(dataset_id=ds["dataset_id"], target="target", algorithm="logistic_regression")
    job = api.wait(q["job_id"])
    assert job["status"] == "succeeded"
    return {
        "api": api,
        "ds": ds,
        "model": q["model_id"],
        "job": q["job_id"],
        "one": one_class["dataset_id"],
        "partial": partial["dataset_id"],
        "frame": frame,
    }


def cases(w):
    ds, model = w["ds"]["dataset_id"], w["model"]
    row = w["frame"].drop(columns=["target"]).iloc[0].to_dict()
    big = b"a,b\n" + b"1,2\n" * (3 * 1024 * 1024)  # > 8 MiB upload limit of the test gateway

    def train(**b):
        return ("POST", "/function/train", {"json": {"dataset_id": ds, "target": "target", **b}})

    return [
        ("empty upload", "POST", "/function/upload", {"content": b"", "headers": CSV}, 400, "empty_body"),
        (
            "binary upload",
            "POST",
            "/function/upload",
            {"content": b"\x89PNG\r\n\x1a\n\x00\x00\x00", "headers": CSV},
            400,
            "invalid_csv",
        ),
        ("header only", "POST", "/function/upload", {"content": b"a,b,c\n", "headers": CSV}, 400, "empty_csv"),
        (
            "duplicate columns",
            "POST",
            "/function/upload",
            {"content": b"a,a\n1,2\n", "headers": CSV},
            400,
            "invalid_csv",
        ),
        (
            "empty column name",
            "POST",
            "/function/upload",
            {"content": b"a,,c\n1,2,3\n", "headers": CSV},
            400,
            "invalid_csv",
        ),
        (
            "ragged rows",
            "POST",
            "/function/upload",
            {"content": b"a,b\n1,2\n3,4,5,6\n7,8\n", "headers": CSV},
            400,
            "invalid_csv",
        ),
        (
            "not utf-8",
            "POST",
            "/function/upload",
            {"content": "na\xefve,b\n\xe9t\xe9,2\n".encode("latin-1"), "headers": CSV},
            400,
            "invalid_csv",
        ),
        (
            "json to upload",
            "POST",
            "/function/upload",
            {"content": b'{"a": 1}', "headers": JSONH},
            415,
            "unsupported_media_type",
        ),
        ("oversize upload", "POST", "/function/upload", {"content": big, "headers": CSV}, 413, "payload_too_large"),
        (
            "multipart without file",
            "POST",
            "/function/upload",
            {"files": {"other": ("x.csv", b"a\n1\n")}},
            400,
            "missing_field",
        ),
        (
            "non-JSON train body",
            "POST",
            "/function/train",
            {"content": b"dataset=1", "headers": JSONH},
            400,
            "invalid_json",
        ),
        ("empty train body", "POST", "/function/train", {"content": b"", "headers": JSONH}, 400, "empty_body"),
        ("JSON array body", "POST", "/function/train", {"json": [1, 2]}, 400, "invalid_body"),
        (
            "csv content type to train",
            "POST",
            "/function/train",
            {"content": b"a,b", "headers": CSV},
            415,
            "unsupported_media_type",
        ),
        (
            "unknown dataset",
            "POST",
            "/function/train",
            {"json": {"dataset_id": "ds_nope", "target": "t"}},
            404,
            "dataset_not_found",
        ),
        ("unknown target column", *train(target="nope"), 400, "unknown_columns"),
        ("unknown feature column", *train(features=["petal length (cm)", "ghost"]), 400, "unknown_columns"),
        ("unknown algorithm", *train(algorithm="quantum_forest"), 400, "unknown_algorithm"),
        ("non-sklearn class", *train(algorithm="os.system"), 400, "unknown_algorithm"),
        ("invalid param value", *train(algorithm="random_forest", params={"n_estimators": -3}), 400, "invalid_params"),
        ("unknown param", *train(algorithm="random_forest", params={"n_trees": 3}), 400, "invalid_params"),
        ("bad test_size", *train(test_size=1.5), 400, "invalid_field"),
        ("typo in field", *train(targte="x"), 400, "unknown_fields"),
        ("unknown task", *train(task="ranking"), 400, "invalid_field"),
        (
            "one-class target",
            "POST",
            "/function/train",
            {"json": {"dataset_id": w["one"], "target": "b"}},
            422,
            "one_class_target",
        ),
        (
            "regression on strings",
            "POST",
            "/function/train",
            {"json": {"dataset_id": w["one"], "target": "b", "task": "regression"}},
            422,
            "non_numeric_target",
        ),
        (
            "unknown model",
            "POST",
            "/function/predict",
            {"json": {"model_id": "mdl_nope", "dataset_id": ds}},
            404,
            "model_not_found",
        ),
        (
            "columns missing at predict",
            "POST",
            "/function/predict",
            {"json": {"model_id": model, "dataset_id": w["partial"]}},
            400,
            "missing_columns",
        ),
        (
            "online missing columns",
            "POST",
            "/function/predict",
            {"json": {"model_id": model, "instances": [{"x": 1}]}},
            400,
            "missing_columns",
        ),
        (
            "online bad value",
            "POST",
            "/function/predict",
            {"json": {"model_id": model, "instances": [{**row, "sepal length (cm)": "long"}]}},
            400,
            "invalid_values",
        ),
        (
            "online too many rows",
            "POST",
            "/function/predict",
            {"json": {"model_id": model, "instances": [row] * 1001}},
            413,
            "payload_too_large",
        ),
        (
            "online not a list",
            "POST",
            "/function/predict",
            {"json": {"model_id": model, "instances": "all"}},
            400,
            "invalid_instances",
        ),
        (
            "two online formats",
            "POST",
            "/function/predict",
            {"json": {"model_id": model, "instances": [row], "dataframe_records": [row]}},
            400,
            "invalid_instances",
        ),
        ("unknown job", "GET", "/function/result/job_nope", {}, 404, "job_not_found"),
        ("bad limit", "GET", f"/function/result/{w['job']}", {"params": {"limit": "many"}}, 400, "invalid_query"),
        ("limit too large", "GET", "/function/upload", {"params": {"limit": 100000}}, 400, "invalid_query"),
        ("bad format", "GET", f"/function/result/{w['job']}", {"params": {"format": "xml"}}, 400, "invalid_query"),
        (
            "csv of a train job",
            "GET",
            f"/function/result/{w['job']}",
            {"params": {"format": "csv"}},
            409,
            "not_a_prediction_job",
        ),
        ("cancel finished job", "DELETE", f"/function/result/{w['job']}", {}, 409, "job_finished"),
        ("delete unknown dataset", "DELETE", "/function/upload/ds_nope", {}, 404, "dataset_not_found"),
        ("unknown function", "POST", "/function/nope", {"json": {}}, 404, "route_not_found"),
        ("wrong method", "PUT", "/function/train", {"json": {}}, 405, "method_not_allowed"),
        ("unknown sub-path", "GET", f"/function/upload/{ds}/extra", {}, 404, "route_not_found"),
        ("async with GET", "GET", "/async-function/train", {}, 405, "method_not_allowed"),
        ("unknown system function", "GET", "/system/function/nope", {}, 404, "route_not_found"),
        *hostile_json(w, row),
    ]


def deep(n: int) -> str:
    return "[" * n + "]" * n


def hostile_json(w, row) -> list:
    """JSON nested past 1,024 levels, and numbers no float holds: 400, never 500 (issue 16)."""
    ds, model = w["ds"]["dataset_id"], w["model"]
    feature = "sepal length (cm)"

    def raw(text):
        return {"content": text.encode(), "headers": JSONH}

    def ce(data):
        return {"json": {"specversion": "1.0", "id": "ce-deep", "type": "t", "source": "s", "data": data}}

    def online(value):
        return {"json": {"model_id": model, "instances": [row, {**row, feature: value}]}}

    def literal(text):
        return raw(f'{{"model_id": "{model}", "instances": [{{"{feature}": {text}}}]}}')

    return [
        (
            "train body nested 20,000 deep",
            "POST",
            "/function/train",
            raw(f'{{"dataset_id": "{ds}", "params": {deep(20000)}}}'),
            400,
            "invalid_json",
        ),
        (
            "train body nested 1,100 deep",
            "POST",
            "/function/train",
            raw(f'{{"dataset_id": "{ds}", "params": {deep(1100)}}}'),
            400,
            "invalid_json",
        ),
        (
            "predict body nested 20,000 deep",
            "POST",
            "/function/predict",
            raw(f'{{"model_id": "{model}", "instances": {deep(20000)}}}'),
            400,
            "invalid_json",
        ),
        (
            "CloudEvent data string nested deep (train)",
            "POST",
            "/function/train",
            ce(f'{{"dataset_id": "{ds}", "params": {deep(20000)}}}'),
            400,
            "invalid_json",
        ),
        (
            "CloudEvent data string nested deep (predict)",
            "POST",
            "/function/predict",
            ce(f'{{"model_id": "{model}", "instances": {deep(5000)}}}'),
            400,
            "invalid_json",
        ),
        (
            "CloudEvent data string with Infinity",
            "POST",
            "/function/predict",
            ce(f'{{"model_id": "{model}", "instances": [{{"{feature}": Infinity}}]}}'),
            400,
            "invalid_json",
        ),
        ('online "inf"', "POST", "/function/predict", online("inf"), 400, "invalid_values"),
        ('online "-Infinity"', "POST", "/function/predict", online("-Infinity"), 400, "invalid_values"),
        ('online "1e999"', "POST", "/function/predict", online("1e999"), 400, "invalid_values"),
        ("online 4,000-digit string", "POST", "/function/predict", online("9" * 4000), 400, "invalid_values"),
        ("online Infinity literal", "POST", "/function/predict", literal("Infinity"), 400, "invalid_json"),
        ("online NaN literal", "POST", "/function/predict", literal("NaN"), 400, "invalid_json"),
        ("online 1e999 literal", "POST", "/function/predict", literal("1e999"), 400, "invalid_json"),
        ("online 4,000-digit integer", "POST", "/function/predict", literal("9" * 4000), 400, "invalid_json"),
    ]


def test_malformed_requests_get_documented_errors(world):
    api: Api = world["api"]
    corpus = cases(world)
    assert len(corpus) >= 25
    failures = []
    for name, method, path, kwargs, status, code in corpus:
        r = api.http.request(method, path, **kwargs)
        ok = r.status_code == status and r.headers.get("content-type", "").startswith("application/json")
        body = r.text
        if ok:
            err = r.json().get("error", {})
            ok = err.get("code") == code and isinstance(err.get("message"), str) and err["message"]
        if r.status_code >= 500 or "Traceback" in body or "<html" in body.lower():
            ok = False
        if not ok:
            failures.append(f"{name}: {r.status_code} {body[:200]}")
    assert not failures, "\n".join(failures)


def test_gateway_healthy_and_data_intact_after_bad_input(world):
    api: Api = world["api"]
    for _ in range(2):
        for _name, method, path, kwargs, _status, _code in cases(world):
            assert api.http.request(method, path, **kwargs).status_code < 500
    assert api.http.get("/healthz").text == "OK"
    ds = api.http.get(f"/function/upload/{world['ds']['dataset_id']}").json()
    assert ds["sha256"] == world["ds"]["sha256"] and ds["rows"] == 150
    row = world["frame"].drop(columns=["target"]).iloc[[0, 60, 120]].to_dict(orient="records")
    out = api.online(world["model"], instances=row)
    assert out["predictions"] == [0, 1, 2]
    listing = api.http.get("/function/upload", params={"limit": 1000}).json()
    assert all(d["rows"] > 0 for d in listing["datasets"])  # no half-written dataset from a rejected upload
    assert json.dumps(listing)  # serialisable, sane


def test_non_finite_numbers_get_a_400_naming_the_position_in_every_protocol(world):
    """Open Inference V2 (JSON and binary tensors), KServe V1, MLflow JSON and CSV: the protocol's own 400 shape."""
    import struct

    api: Api = world["api"]
    model = world["model"]
    features = list(world["frame"].drop(columns=["target"]).columns)
    good = [5.1, 3.5, 1.4, 0.2]
    header = b'{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP64","parameters":{"binary_data_size":64}}]}'
    binary = header + struct.pack("<8d", *good, *good[:3], float("inf"))

    def v2(data, dtype="FP64"):
        return {"json": {"inputs": [{"name": "x", "shape": [2, 4], "datatype": dtype, "data": data}]}}

    v2_columns = {
        "json": {
            "inputs": [
                {
                    "name": f,
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": [str(good[j]), "1e999" if j == 1 else str(good[j])],
                }
                for j, f in enumerate(features)
            ]
        }
    }
    rows = [dict(zip(features, good, strict=True)), {**dict(zip(features, good, strict=True)), features[3]: "-inf"}]
    csv = ",".join(features) + "\n" + ",".join(map(str, good)) + "\n" + "1,2,3," + "9" * 4000 + "\n"
    cases = [
        (
            "v2 BYTES matrix",
            f"/v2/models/{model}/infer",
            v2([[str(v) for v in good], ["inf", "1", "1", "1"]], "BYTES"),
            "row 1, column 'sepal length (cm)'",
        ),
        ("v2 BYTES columns", f"/v2/models/{model}/infer", v2_columns, "row 1, column 'sepal width (cm)'"),
        (
            "v2 binary FP64",
            f"/v2/models/{model}/infer",
            {
                "content": binary,
                "headers": {
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(len(header)),
                },
            },
            "row 1, column 'petal width (cm)'",
        ),
        (
            "v2 1e999 literal",
            f"/v2/models/{model}/infer",
            {
                "content": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP64","data":[1e999,1,1,1]}]}',
                "headers": JSONH,
            },
            "not valid JSON",
        ),
        ("kserve v1", f"/v1/models/{model}:predict", {"json": {"instances": rows}}, "row 1, column 'petal width (cm)'"),
        (
            "mlflow records",
            f"/models/{model}/invocations",
            {"json": {"dataframe_records": rows}},
            "row 1, column 'petal width (cm)'",
        ),
        (
            "mlflow csv",
            f"/models/{model}/invocations",
            {"content": csv.encode(), "headers": CSV},
            "row 1, column 'petal width (cm)'",
        ),
        (
            "native",
            "/function/predict",
            {"json": {"model_id": model, "instances": rows}},
            "row 1, column 'petal width (cm)'",
        ),
    ]
    failures = []
    for name, path, kwargs, words in cases:
        r = api.http.post(path, **kwargs)
        ok = r.status_code == 400 and r.headers.get("content-type", "").startswith("application/json")
        ok = ok and words in r.text and "Traceback" not in r.text and len(r.text) < 1000
        if not ok:
            failures.append(f"{name}: {r.status_code} {r.text[:300]}")
    assert not failures, "\n".join(failures)
    assert api.online(model, instances=rows[:1])["predictions"] == [0]
