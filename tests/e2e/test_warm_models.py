"""A predict job's workers inherit their model from the local runner's fork server (runner/warm_models.py),
on both backend sets: always their own job's model, never another's, and never into a train job; a model
over ``warm_model_max_bytes`` (or one the fork server cannot load) is loaded by the worker itself."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv
from tests.gateway_process import GatewayProcess

pytestmark = [pytest.mark.e2e]

INHERITED = re.compile(r"job (job_\w+): model (mdl_\w+) inherited from the fork server")


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 4)).round(3)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    frame["label"] = np.where(X[:, 0] - X[:, 1] * X[:, 2] > 0.3, "up", "down")
    return frame


def _inherited(gw) -> list[tuple[str, str]]:
    """``(job_id, model_id)`` of every worker that found its model loaded, in log order."""
    return INHERITED.findall(gw.log_path.read_text())


def _models(api: Api, ds: dict) -> tuple[str, str]:
    a = api.train(dataset_id=ds["dataset_id"], target="label", algorithm="logistic_regression")
    b = api.train(
        dataset_id=ds["dataset_id"], target="label", algorithm="random_forest", params={"n_estimators": 5, "n_jobs": 1}
    )
    assert api.wait(a["job_id"])["status"] == api.wait(b["job_id"])["status"] == "succeeded"
    return a["model_id"], b["model_id"]


def test_each_predict_worker_inherits_its_own_model_and_a_train_worker_none(start_gateway):
    gw = start_gateway({"KUBEPREDICT_MAX_CONCURRENT_JOBS": "2"})
    api = Api(gw.url)
    frame = _frame(600, 0)
    ds = api.upload(frame_csv(frame), "warm")
    model_a, model_b = _models(api, ds)
    online = {
        m: api.online(m, instances=frame.drop(columns="label").to_dict(orient="records"))["predictions"]
        for m in (model_a, model_b)
    }
    jobs = [
        (model_a, api.predicted(model_a, ds["dataset_id"])),
        (model_a, api.predicted(model_a, ds["dataset_id"], shards=2)),
        (model_b, api.predicted(model_b, ds["dataset_id"])),
        (model_a, api.predicted(model_a, ds["dataset_id"])),
    ]
    retrain = api.train(dataset_id=ds["dataset_id"], target="label", algorithm="logistic_regression")
    assert api.wait(retrain["job_id"])["status"] == "succeeded"
    jobs.append((model_b, api.predicted(model_b, ds["dataset_id"], shards=2)))

    inherited = _inherited(gw)
    for model_id, job in jobs:
        workers = [m for j, m in inherited if j == job["job_id"]]
        assert workers == [model_id] * (job["shards"] or 1), (job["job_id"], inherited)
        rows = api.all_predictions(job["job_id"], page=1000)
        assert [r["prediction"] for r in rows] == online[model_id]  # its own model's answers, in order
    assert online[model_a] != online[model_b]  # so a mix-up would show
    # The train jobs' workers started with no model: the fork server dropped the one it held.
    train_jobs = {retrain["job_id"]}
    assert not [j for j, _m in inherited if j in train_jobs]


def test_a_model_over_the_limit_is_loaded_by_each_worker(start_gateway):
    gw = start_gateway({"KUBEPREDICT_WARM_MODEL_MAX_BYTES": "1000"})  # smaller than any artifact
    api = Api(gw.url)
    frame = _frame(300, 1)
    ds = api.upload(frame_csv(frame), "warm-limit")
    model_a, _model_b = _models(api, ds)
    job = api.predicted(model_a, ds["dataset_id"], shards=2)
    assert _inherited(gw) == []
    rows = api.all_predictions(job["job_id"], page=1000)
    expected = api.online(model_a, instances=frame.drop(columns="label").to_dict(orient="records"))["predictions"]
    assert [r["prediction"] for r in rows] == expected


def test_a_model_the_fork_server_cannot_load_fails_its_job_with_the_reason(tmp_path):
    """Embedded backend only: the test changes the artifact's file in the local object store."""
    gw = GatewayProcess(tmp_path / "gw").start()
    try:
        _tampered_model_fails(gw)
    finally:
        gw.stop()


def _tampered_model_fails(gw) -> None:
    api = Api(gw.url)
    ds = api.upload(frame_csv(_frame(200, 2)), "warm-tampered")
    model_a, _model_b = _models(api, ds)
    with sqlite3.connect(next(Path(gw.data_dir).rglob("*.db"))) as db:
        (key,) = db.execute("select artifact_key from models where model_id = ?", (model_a,)).fetchone()
    path = next(p for p in Path(gw.data_dir).rglob(Path(key).name) if p.as_posix().endswith("/" + key))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    r = api.http.post("/function/predict", json={"model_id": model_a, "dataset_id": ds["dataset_id"]})
    job = api.wait(r.json()["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "artifact_tampered", job
    assert _inherited(gw) == []
    assert "could not prepare the warm model" in gw.log_path.read_text()
