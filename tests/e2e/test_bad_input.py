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
    return {"api": api, "ds": ds, "model": q["model_id"], "job": q["job_id"], "one": one_class["dataset_id"],
            "partial": partial["dataset_id"], "frame": frame}


def cases(w):
    ds, model = w["ds"]["dataset_id"], w["model"]
    row = w["frame"].drop(columns=["target"]).iloc[0].to_dict()
    big = b"a,b\n" + b"1,2\n" * (3 * 1024 * 1024)  # > 8 MiB upload limit of the test gateway
    train = lambda **b: ("POST", "/function/train", {"json": {"dataset_id": ds, "target": "target", **b}})
    return [
        ("empty upload", "POST", "/function/upload", {"content": b"", "headers": CSV}, 400, "empty_body"),
        ("binary upload", "POST", "/function/upload", {"content": b"\x89PNG\r\n\x1a\n\x00\x00\x00", "headers": CSV}, 400, "invalid_csv"),
        ("header only", "POST", "/function/upload", {"content": b"a,b,c\n", "headers": CSV}, 400, "empty_csv"),
        ("duplicate columns", "POST", "/function/upload", {"content": b"a,a\n1,2\n", "headers": CSV}, 400, "invalid_csv"),
        ("empty column name", "POST", "/function/upload", {"content": b"a,,c\n1,2,3\n", "headers": CSV}, 400, "invalid_csv"),
        ("ragged rows", "POST", "/function/upload", {"content": b"a,b\n1,2\n3,4,5,6\n7,8\n", "headers": CSV}, 400, "invalid_csv"),
        ("not utf-8", "POST", "/function/upload", {"content": "na\xefve,b\n\xe9t\xe9,2\n".encode("latin-1"), "headers": CSV}, 400, "invalid_csv"),
        ("json to upload", "POST", "/function/upload", {"content": b'{"a": 1}', "headers": JSONH}, 415, "unsupported_media_type"),
        ("oversize upload", "POST", "/function/upload", {"content": big, "headers": CSV}, 413, "payload_too_large"),
        ("multipart without file", "POST", "/function/upload", {"files": {"other": ("x.csv", b"a\n1\n")}}, 400, "missing_field"),
        ("non-JSON train body", "POST", "/function/train", {"content": b"dataset=1", "headers": JSONH}, 400, "invalid_json"),
        ("empty train body", "POST", "/function/train", {"content": b"", "headers": JSONH}, 400, "empty_body"),
        ("JSON array body", "POST", "/function/train", {"json": [1, 2]}, 400, "invalid_body"),
        ("csv content type to train", "POST", "/function/train", {"content": b"a,b", "headers": CSV}, 415, "unsupported_media_type"),
        ("unknown dataset", "POST", "/function/train", {"json": {"dataset_id": "ds_nope", "target": "t"}}, 404, "dataset_not_found"),
        ("unknown target column", *train(target="nope"), 400, "unknown_columns"),
        ("unknown feature column", *train(features=["petal length (cm)", "ghost"]), 400, "unknown_columns"),
        ("unknown algorithm", *train(algorithm="quantum_forest"), 400, "unknown_algorithm"),
        ("non-sklearn class", *train(algorithm="os.system"), 400, "unknown_algorithm"),
        ("invalid param value", *train(algorithm="random_forest", params={"n_estimators": -3}), 400, "invalid_params"),
        ("unknown param", *train(algorithm="random_forest", params={"n_trees": 3}), 400, "invalid_params"),
        ("bad test_size", *train(test_size=1.5), 400, "invalid_field"),
        ("typo in field", *train(targte="x"), 400, "unknown_fields"),
        ("unknown task", *train(task="ranking"), 400, "invalid_field"),
        ("one-class target", "POST", "/function/train", {"json": {"dataset_id": w["one"], "target": "b"}}, 422, "one_class_target"),
        ("regression on strings", "POST", "/function/train", {"json": {"dataset_id": w["one"], "target": "b", "task": "regression"}}, 422, "non_numeric_target"),
        ("unknown model", "POST", "/function/predict", {"json": {"model_id": "mdl_nope", "dataset_id": ds}}, 404, "model_not_found"),
        ("columns missing at predict", "POST", "/function/predict", {"json": {"model_id": model, "dataset_id": w["partial"]}}, 400, "missing_columns"),
        ("online missing columns", "POST", "/function/predict", {"json": {"model_id": model, "instances": [{"x": 1}]}}, 400, "missing_columns"),
        ("online bad value", "POST", "/function/predict", {"json": {"model_id": model, "instances": [{**row, "sepal length (cm)": "long"}]}}, 400, "invalid_values"),
        ("online too many rows", "POST", "/function/predict", {"json": {"model_id": model, "instances": [row] * 1001}}, 413, "payload_too_large"),
        ("online not a list", "POST", "/function/predict", {"json": {"model_id": model, "instances": "all"}}, 400, "invalid_instances"),
        ("two online formats", "POST", "/function/predict", {"json": {"model_id": model, "instances": [row], "dataframe_records": [row]}}, 400, "invalid_instances"),
        ("unknown job", "GET", "/function/result/job_nope", {}, 404, "job_not_found"),
        ("bad limit", "GET", f"/function/result/{w['job']}", {"params": {"limit": "many"}}, 400, "invalid_query"),
        ("limit too large", "GET", "/function/upload", {"params": {"limit": 100000}}, 400, "invalid_query"),
        ("bad format", "GET", f"/function/result/{w['job']}", {"params": {"format": "xml"}}, 400, "invalid_query"),
        ("csv of a train job", "GET", f"/function/result/{w['job']}", {"params": {"format": "csv"}}, 409, "not_a_prediction_job"),
        ("cancel finished job", "DELETE", f"/function/result/{w['job']}", {}, 409, "job_finished"),
        ("delete unknown dataset", "DELETE", "/function/upload/ds_nope", {}, 404, "dataset_not_found"),
        ("unknown function", "POST", "/function/nope", {"json": {}}, 404, "route_not_found"),
        ("wrong method", "PUT", "/function/train", {"json": {}}, 405, "method_not_allowed"),
        ("unknown sub-path", "GET", f"/function/upload/{ds}/extra", {}, 404, "route_not_found"),
        ("async with GET", "GET", "/async-function/train", {}, 405, "method_not_allowed"),
        ("unknown system function", "GET", "/system/function/nope", {}, 404, "route_not_found"),
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
        for name, method, path, kwargs, status, code in cases(world):
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
