"""An unreachable or failing S3 store: callers get 503 JSON, and the catalogue holds nothing half-written."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.api import Api
from tests.gateway_process import GatewayProcess
from tests.services import ServiceUnavailable, in_ci
from tests.services.s3 import S3ProxyServer

pytestmark = pytest.mark.e2e
CSV = "a,b,y\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(80))


def s3_env(server, bucket: str) -> dict:
    return server.kubepredict_env(bucket, "kp")


@pytest.fixture
def private_s3():
    """An S3Proxy of this test's own, so stopping it disturbs nobody."""
    server = S3ProxyServer()
    try:
        server.check_available()
    except ServiceUnavailable as why:
        (pytest.fail if in_ci() else pytest.skip)(f"S3Proxy unavailable: {why}")
    server.start()
    yield server
    server.stop()


def test_unreachable_store_answers_503_and_keeps_nothing(tmp_path):
    env = {
        "KUBEPREDICT_STORAGE_URL": "s3://nowhere/kp",
        "KUBEPREDICT_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "KUBEPREDICT_S3_ACCESS_KEY_ID": "x",
        "KUBEPREDICT_S3_SECRET_ACCESS_KEY": "y",
    }
    gw = GatewayProcess(tmp_path / "gw", env=env).start(healthy=False)  # /healthz says 503: the store is away
    try:
        assert httpx.get(gw.url + "/healthz").status_code == 503
        api = Api(gw.url)
        r = api.http.post("/function/upload", params={"name": "x"}, content=CSV, headers={"Content-Type": "text/csv"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
        assert api.http.get("/function/upload").json()["total"] == 0
    finally:
        gw.stop()


def test_failing_store_leaves_no_dataset_and_no_ready_model(private_s3, tmp_path):
    bucket = private_s3.create_bucket()
    env = {**s3_env(private_s3, bucket), "KUBEPREDICT_JOB_MAX_ATTEMPTS": "1"}
    data = tmp_path / "gw"
    with GatewayProcess(data, env={**env, "KUBEPREDICT_MAX_CONCURRENT_JOBS": "0"}) as gw:  # jobs stay queued
        api = Api(gw.url)
        ds = api.upload(CSV, "before-outage")
        queued = api.train(dataset_id=ds["dataset_id"], target="y", algorithm="decision_tree")
        private_s3.stop()  # the store fails from now on
        r = api.http.post(
            "/function/upload", params={"name": "during"}, content=CSV, headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
        r = api.http.post("/function/train", json={"dataset_id": ds["dataset_id"], "target": "y"})
        assert r.status_code == 503  # validation reads the target column from the store
        listing = api.http.get("/function/upload").json()
        assert [d["dataset_id"] for d in listing["datasets"]] == [ds["dataset_id"]]
        assert api.http.get("/healthz").status_code == 503
    # A dispatcher now runs the queued job: it cannot read its data, so job and model fail, cleanly.
    gw2 = GatewayProcess(data, env=env).start(healthy=False)
    try:
        api2 = Api(gw2.url)
        job = api2.wait(queued["job_id"])
        assert job["status"] == "failed" and job["error"]["code"] == "backend_unavailable"
        model = api2.http.get(f"/function/train/{queued['model_id']}").json()
        assert model["status"] == "failed" and model["sha256"] is None
        assert all(m["status"] != "ready" for m in api2.http.get("/function/train").json()["models"])
    finally:
        gw2.stop()
