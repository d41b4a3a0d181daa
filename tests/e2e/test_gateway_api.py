"""Gateway routes beyond the four functions' happy paths: async calls, system API, auth, multipart, delete, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.e2e.api import Api

pytestmark = pytest.mark.e2e
IRIS = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()


class _Callbacks(BaseHTTPRequestHandler):
    received: ClassVar[list] = []  # shared by the handler instances; the test resets it

    def do_POST(self):  # http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_async_function_calls_back_with_the_answer(start_gateway):
    gateway_url = start_gateway({"KUBEPREDICT_CALLBACK_HOSTS": "127.0.0.1"}).url  # loopback callbacks, listed
    server = HTTPServer(("127.0.0.1", 0), _Callbacks)
    _Callbacks.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = httpx.post(
            f"{gateway_url}/async-function/upload",
            params={"name": "async-iris"},
            content=IRIS,
            headers={"Content-Type": "text/csv", "X-Callback-Url": f"http://127.0.0.1:{server.server_port}/cb"},
        )
        assert r.status_code == 202 and r.headers["X-Call-Id"]
        for _ in range(100):
            if _Callbacks.received:
                break
            threading.Event().wait(0.1)
        headers, body = _Callbacks.received[0]
        assert headers["X-Call-Id"] == r.headers["X-Call-Id"] and headers["X-Function-Status"] == "201"
        assert float(headers["X-Duration-Seconds"]) > 0 and json.loads(body)["rows"] == 150
    finally:
        server.shutdown()


def test_system_functions_like_openfaas(gateway_url):
    fns = httpx.get(f"{gateway_url}/system/functions").json()
    assert sorted(f["name"] for f in fns) == ["predict", "result", "train", "upload"]
    by_name = {f["name"]: f for f in fns}
    assert by_name["train"]["annotations"]["topic"] == "kubepredict.train.requests"
    assert by_name["predict"]["annotations"]["topic"] == "kubepredict.predict.requests"
    assert all(
        {"image", "namespace", "invocationCount", "replicas", "availableReplicas", "labels"} <= set(f) for f in fns
    )
    # faas-cli addresses functions as name.namespace, like the OpenFaaS gateway allows.
    assert httpx.get(f"{gateway_url}/function/train.openfaas-fn/algorithms").status_code == 200
    assert httpx.get(f"{gateway_url}/function/train.elsewhere/algorithms").status_code == 404
    one = httpx.get(f"{gateway_url}/system/function/upload").json()
    assert one["name"] == "upload" and one["invocationCount"] >= 0
    assert httpx.get(f"{gateway_url}/", follow_redirects=False).headers["location"] == "/ui/"
    assert httpx.get(f"{gateway_url}/ui/").text.lstrip().lower().startswith("<!doctype html")


def test_bearer_token_protects_functions_and_metrics_not_health(start_gateway):
    gw = start_gateway({"KUBEPREDICT_API_TOKEN": "s3cret-token"})
    r = httpx.get(f"{gw.url}/function/train/algorithms")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert (
        httpx.get(f"{gw.url}/function/train/algorithms", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert httpx.get(f"{gw.url}/system/functions").status_code == 401
    ok = httpx.get(f"{gw.url}/function/train/algorithms", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()["algorithms"]
    assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert httpx.get(f"{gw.url}/metrics").status_code == 401  # Prometheus sends the token (authorization:)
    assert httpx.get(f"{gw.url}/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert httpx.get(f"{gw.url}/ui/").status_code == 200


def test_multipart_upload_and_dataframe_records(gateway_url):
    api = Api(gateway_url)
    r = api.http.post("/function/upload", files={"file": ("flowers.csv", IRIS, "text/csv")}, data={"name": "mp-iris"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["name"] == "mp-iris" and ds["rows"] == 150
    q = api.train(dataset_id=ds["dataset_id"], target="species", algorithm="knn")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    row = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
    out = api.online(q["model_id"], dataframe_records=[row])
    assert out["predictions"] == ["virginica"] and out["classes"] == ["setosa", "versicolor", "virginica"]


def test_delete_dataset_conflicts_while_a_job_uses_it(start_gateway):
    gw = start_gateway({"KUBEPREDICT_MAX_CONCURRENT_JOBS": "0"})  # nothing runs: the job stays queued
    api = Api(gw.url)
    ds = api.upload(IRIS, "in-use")
    q = api.train(dataset_id=ds["dataset_id"], target="species", algorithm="knn")
    r = api.http.delete(f"/function/upload/{ds['dataset_id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "dataset_in_use"
    assert r.json()["error"]["details"]["job_id"] == q["job_id"]
    assert api.http.delete(f"/function/result/{q['job_id']}").status_code == 202
    assert api.http.delete(f"/function/upload/{ds['dataset_id']}").status_code == 204
    assert api.http.get(f"/function/upload/{ds['dataset_id']}").status_code == 404


def test_cli_commands_against_the_gateway(gateway_url, tmp_path):
    csv = tmp_path / "iris.csv"
    csv.write_bytes(IRIS)

    def cli(*args):
        r = subprocess.run(
            [sys.executable, "-m", "kubepredict.cli", *args, "--gateway", gateway_url],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    out = cli("upload", str(csv), "--name", "cli-iris")
    ds_id = out.split()[0]
    assert ds_id.startswith("ds_") and "150 rows" in out
    out = cli("train", ds_id, "--target", "species", "--algorithm", "random_forest")
    assert "succeeded" in out and "accuracy" in out
    model_id = next(w for w in out.split() if w.startswith("mdl_"))
    out = cli("predict", model_id, "--dataset", ds_id)
    job_id = next(w for w in out.split() if w.startswith("job_"))
    assert "succeeded" in out
    assert "drift: none above the threshold" in out and "drift per feature" in out  # the batch's drift report
    assert "histogram" not in out  # the per-feature bins stay in the JSON answer, not on the terminal
    assert "setosa" in cli("result", job_id, "--limit", "5")
    row = '{"sepal_length": 6.3, "sepal_width": 2.9, "petal_length": 5.6, "petal_width": 1.8}'
    explained = json.loads(cli("predict", model_id, "--row", row, "--explain"))
    assert explained["explanations"]["method"] == "tree"
    assert set(explained["explanations"]["rows"][0]["contributions"]) == {
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    }
    cli("result", job_id, "--csv", str(tmp_path / "out.csv"))
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 151
    bad = subprocess.run(
        [sys.executable, "-m", "kubepredict.cli", "train", "ds_nope", "--target", "x", "--gateway", gateway_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "dataset_not_found" in bad.stderr and "Traceback" not in bad.stderr


def test_demo_runs_against_the_gateway(gateway_url):
    r = subprocess.run(
        [sys.executable, "-m", "kubepredict.cli", "demo", "--gateway", gateway_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4/4 results" in r.stdout and "setosa" in r.stdout


def _mixed_targets_csv(rows: int = 60) -> str:
    """Targets of every kind: integer labels written as floats, a measurement, many integers, strings."""
    lines = ["x1,x2,label_float,measure,count,kind"]
    for i in range(rows):
        lines.append(f"{i % 7},{(i * 13) % 11},{float(i % 3)},{i * 0.37 + 0.01:.2f},{i},{'abc'[i % 3]}")
    return "\n".join(lines) + "\n"


def test_train_task_route_answers_what_training_infers(gateway_url):
    """GET /function/train/task: the page asks it instead of guessing; training stores the same task."""
    api = Api(gateway_url)
    ds = api.upload(_mixed_targets_csv(), "mixed-targets")
    assert {c["name"]: c["dtype"] for c in ds["columns"]}["label_float"].startswith("float")
    expected = {
        "label_float": "classification",
        "measure": "regression",
        "count": "regression",
        "kind": "classification",
        "x1": "classification",
    }
    query = {"dataset_id": ds["dataset_id"], "target": "measure"}
    for target, task in expected.items():
        r = api.http.get("/function/train/task", params={**query, "target": target})
        assert r.status_code == 200, r.text
        assert r.json() == {"dataset_id": ds["dataset_id"], "target": target, "task": task}
    # the task a queued training (no task given) records is the route's answer
    for target in ("label_float", "measure"):
        q = api.train(dataset_id=ds["dataset_id"], target=target, algorithm="auto")
        assert api.http.get(f"/function/train/{q['model_id']}").json()["task"] == expected[target]
        api.http.delete(f"/function/result/{q['job_id']}")

    def error(params: dict) -> tuple[int, str]:
        r = api.http.get("/function/train/task", params=params)
        return r.status_code, r.json()["error"]["code"]

    assert error({"dataset_id": ds["dataset_id"]}) == (400, "invalid_query")
    assert error({"target": "measure"}) == (400, "invalid_query")
    assert error({**query, "extra": "1"}) == (400, "invalid_query")
    assert error({"dataset_id": ds["dataset_id"], "target": "nope"}) == (400, "unknown_columns")
    assert error({"dataset_id": "ds_nope", "target": "measure"}) == (404, "dataset_not_found")


def test_page_scripts_are_served_as_javascript(gateway_url):
    """Browsers run an ES module only under a JavaScript type; a missing script is still a JSON 404."""
    for path in ("/ui/app.js", "/ui/js/client.js", "/ui/js/train.js", "/ui/api.js"):
        r = httpx.get(gateway_url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript"), (path, r.headers)
    assert httpx.get(gateway_url + "/ui/style.css").headers["content-type"].startswith("text/css")
    r = httpx.get(gateway_url + "/ui/js/missing.js")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
