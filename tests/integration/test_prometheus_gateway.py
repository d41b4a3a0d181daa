"""A real Prometheus scrapes a running gateway while the end-to-end flow runs; PromQL then returns
exactly the calls the test made (per function and status code), the succeeded jobs and the rows
predicted — on both backend sets (SQLite + files, PostgreSQL + S3). The exposition passes
``promtool check metrics`` without errors or lint findings."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from kubepredict.metrics import JOB_BUCKETS, LATENCY_BUCKETS
from tests.integration.prom_helpers import SCRAPE, TallyApi, as_map, assert_flow_metrics, wait_equal

pytestmark = pytest.mark.slow

IRIS_ROWS = 150


def _iris_csv() -> str:
    from importlib.resources import files

    return files("kubepredict").joinpath("data/iris.csv").read_text()


def test_prometheus_counts_the_flow_through_the_gateway(prometheus, promtool, start_gateway):
    gw = start_gateway()
    job = f"kp-gw-{gw.port}"
    prometheus.set_scrape_targets(job, [gw.url.split("//")[1]], **SCRAPE)
    api = TallyApi(gw.url)

    # The flow: upload, train, batch predict, online predict, results — plus some rejected calls.
    ds = api.upload(_iris_csv(), "iris")
    train = api.train(dataset_id=ds["dataset_id"], target="species", algorithm="logistic_regression")
    assert api.wait(train["job_id"])["status"] == "succeeded"
    pjob = api.predict(train["model_id"], ds["dataset_id"])
    assert api.wait(pjob["job_id"])["status"] == "succeeded"
    api.online(
        train["model_id"],
        instances=[{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}],
    )
    assert api.http.post("/function/upload", content=b"", headers={"Content-Type": "text/csv"}).status_code == 400
    assert api.http.post("/function/train", json={"dataset_id": "ds_nope", "target": "y"}).status_code == 404
    assert api.http.get("/function/result/job_nope").status_code == 404
    assert api.http.put("/function/predict").status_code == 405

    expected = {k: float(v) for k, v in api.calls.items()}
    assert {
        ("upload", "201"),
        ("train", "202"),
        ("predict", "202"),
        ("predict", "200"),
        ("result", "200"),
        ("upload", "400"),
        ("train", "404"),
        ("result", "404"),
        ("predict", "405"),
    } <= set(expected)
    sel = f'job="{job}"'
    assert_flow_metrics(prometheus, job, api.calls, IRIS_ROWS)
    wait_equal(prometheus, f"kubepredict_jobs_in_queue{{{sel}}}", {("train",): 0.0, ("predict",): 0.0}, ("kind",))
    wait_equal(
        prometheus, f"kubepredict_job_duration_seconds_count{{{sel}}}", {("train",): 1.0, ("predict",): 1.0}, ("kind",)
    )
    wait_equal(prometheus, f"kubepredict_upload_bytes_total{{{sel}}}", float(ds["size_bytes"]))
    wait_equal(prometheus, f"kubepredict_online_predict_seconds_count{{{sel}}}", 1.0)
    wait_equal(prometheus, f"kubepredict_catalog_up{{{sel}}}", 1.0)
    # The outbox holds the events of this flow (no Kafka configured): a number, not an error.
    pending = prometheus.query(f"kubepredict_events_pending{{{sel}}}", timeout=30)
    assert float(pending[0]["value"][1]) >= 1
    # Histograms: the configured buckets, cumulative, +Inf equal to the count.
    buckets = as_map(
        prometheus.query(f'gateway_functions_seconds_bucket{{{sel},function_name="upload",code="201"}}'), "le"
    )
    assert len(buckets) == len(LATENCY_BUCKETS) + 1 and buckets[("+Inf",)] == 1.0
    job_buckets = as_map(prometheus.query(f'kubepredict_job_duration_seconds_bucket{{{sel},kind="train"}}'), "le")
    assert len(job_buckets) == len(JOB_BUCKETS) + 1 and job_buckets[("+Inf",)] == 1.0
    assert list(dict(sorted(job_buckets.items(), key=lambda kv: float(kv[0][0]))).values()) == sorted(
        job_buckets.values()
    )

    # No label carries an id: every label value of our series is from a small, known set.
    series = prometheus.query(f'{{{sel},__name__=~"gateway_.*|kubepredict_.*"}}', timeout=30)
    for s in series:
        for _name, value in s["metric"].items():
            assert not value.startswith(("ds_", "mdl_", "job_")), s["metric"]
        allowed = {"__name__", "job", "instance", "function_name", "code", "kind", "status", "le"}
        if s["metric"]["__name__"] == "kubepredict_feature_drift_psi":  # issue 14 names these two: a model
            allowed |= {"model", "feature"}  # *name* and a feature column, bounded by what was trained
        assert set(s["metric"]) <= allowed, s["metric"]

    # promtool: the exposition parses and has no lint findings (exit 0; 1 = parse error, 3 = lint).
    exposition = httpx.get(gw.url + "/metrics", timeout=30).content
    check = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert check.returncode == 0, (check.returncode, check.stdout.decode(), check.stderr.decode())
