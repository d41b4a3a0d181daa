"""Sharded batch prediction over real gateways and worker processes, on both backend sets.

Sharded and unsharded jobs give the same predictions in the same order; a killed shard worker is
retried alone; a cancelled sharded job leaves no worker running.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv

pytestmark = [pytest.mark.e2e]


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 5)).round(3)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    frame["colour"] = np.array(["red", "green", "blue"])[rng.integers(0, 3, rows)]
    frame["label"] = np.where(X[:, 0] + X[:, 1] ** 2 > 0.8, "yes", "no")
    frame["amount"] = (X[:, 2] * 3 + X[:, 3]).round(3)
    return frame


def _predict(api: Api, model_id: str, dataset_id: str, shards: int | None = None) -> dict:
    body = {"model_id": model_id, "dataset_id": dataset_id, **({"shards": shards} if shards else {})}
    r = api.http.post("/function/predict", json=body)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.mark.parametrize("target,algorithm", [("label", "logistic_regression"), ("amount", "random_forest")])
def test_sharded_and_unsharded_predictions_are_identical(gateway_url, target, algorithm):
    api = Api(gateway_url)
    frame = _frame(5003)
    ds = api.upload(frame_csv(frame), f"shards-{target}")
    params = {"n_estimators": 20, "n_jobs": 1} if algorithm == "random_forest" else {}
    q = api.train(
        dataset_id=ds["dataset_id"],
        target=target,
        algorithm=algorithm,
        params=params,
        features=["f0", "f1", "f2", "f3", "f4", "colour"],
    )
    assert api.wait(q["job_id"])["status"] == "succeeded"
    whole = api.wait(_predict(api, q["model_id"], ds["dataset_id"])["job_id"])
    sharded = api.wait(_predict(api, q["model_id"], ds["dataset_id"], shards=3)["job_id"])
    assert whole["status"] == sharded["status"] == "succeeded", (whole, sharded)
    assert whole["shards"] is None and sharded["shards"] == 3
    assert [s["status"] for s in sharded["shard_status"]] == ["succeeded"] * 3
    assert [(s["row_start"], s["row_stop"]) for s in sharded["shard_status"]] == [(0, 1668), (1668, 3336), (3336, 5003)]
    assert sharded["progress"] == 1.0
    a, b = api.all_predictions(whole["job_id"], page=1000), api.all_predictions(sharded["job_id"], page=1000)
    assert [r["row"] for r in b] == list(range(5003))
    assert a == b
    summary_keys = ("rows", "class_counts", "quantiles", "mean", "histogram")
    assert {k: whole["summary"].get(k) for k in summary_keys} == {k: sharded["summary"].get(k) for k in summary_keys}
    assert api.csv_rows(whole["job_id"]) == api.csv_rows(sharded["job_id"])


def test_bad_shard_counts_are_400(gateway_url):
    api = Api(gateway_url)
    ds = api.upload(frame_csv(_frame(50)), "shards-bad")
    q = api.train(dataset_id=ds["dataset_id"], target="label", algorithm="logistic_regression")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    for bad in (0, -1, 65, 2.5, "2", True, [2]):
        r = api.http.post(
            "/function/predict", json={"model_id": q["model_id"], "dataset_id": ds["dataset_id"], "shards": bad}
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_field" and r.json()["error"]["details"]["field"] == "shards"
    # more shards than rows: one row per shard, never an empty shard
    job = api.wait(_predict(api, q["model_id"], ds["dataset_id"], shards=64)["job_id"])
    assert job["status"] == "succeeded" and job["shards"] == 50
    assert [r["row"] for r in api.all_predictions(job["job_id"], page=100)] == list(range(50))


def _slow_sharded_job(api: Api, shards: int = 2) -> tuple[dict, str, str]:
    """A random forest (300 trees, scored in one pass) over 30,000 rows in 500-row chunks: each shard runs
    for seconds, even on a fast machine."""
    train = api.upload(frame_csv(_frame(2000, seed=1)), "slow-train")
    q = api.train(
        dataset_id=train["dataset_id"],
        target="label",
        algorithm="random_forest",
        params={"n_estimators": 300, "n_jobs": 1},
        features=["f0", "f1", "f2", "f3", "f4", "colour"],
    )
    assert api.wait(q["job_id"])["status"] == "succeeded"
    ds = api.upload(frame_csv(_frame(30_000, seed=2)), "slow-score")
    return _predict(api, q["model_id"], ds["dataset_id"], shards=shards), q["model_id"], ds["dataset_id"]


def _wait_shards_scoring(api: Api, job_id: str, timeout: float = 90) -> list[dict]:
    """Until every shard runs with a worker and has scored some rows (and none finished yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.job(job_id, limit=0)
        shards = job.get("shard_status") or []
        assert job["status"] in ("queued", "running"), job
        if shards and all(s["status"] == "running" and s["worker"] and s["rows_done"] > 0 for s in shards):
            return shards
        time.sleep(0.05)
    raise AssertionError(f"the shards of {job_id} never all ran")


def _pid(shard: dict) -> int:
    return int(shard["worker"].rsplit(":", 1)[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by the gateway) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_killed_shard_worker_is_retried_alone(start_gateway):
    gw = start_gateway(
        {
            "KUBEPREDICT_JOB_MAX_ATTEMPTS": "2",
            "KUBEPREDICT_MAX_CONCURRENT_JOBS": "2",
            "KUBEPREDICT_PREDICT_CHUNK_ROWS": "500",
        }
    )
    api = Api(gw.url, timeout=120)
    queued, model_id, dataset_id = _slow_sharded_job(api)
    shards = _wait_shards_scoring(api, queued["job_id"])
    victim, survivor = _pid(shards[1]), _pid(shards[0])
    os.kill(victim, signal.SIGKILL)
    job = api.wait(queued["job_id"], timeout=240)
    assert job["status"] == "succeeded", job
    first, second = job["shard_status"]
    assert (first["attempt"], first["worker"]) == (1, shards[0]["worker"])  # never restarted
    assert second["attempt"] == 2 and second["worker"] != shards[1]["worker"]
    assert _pid(first) == survivor
    rows = api.all_predictions(job["job_id"], page=1000)
    assert [r["row"] for r in rows] == list(range(30_000))  # no row missing, none twice
    whole = api.wait(_predict(api, model_id, dataset_id)["job_id"], timeout=240)
    assert api.all_predictions(whole["job_id"], page=1000) == rows


def test_cancelled_sharded_job_leaves_no_worker(start_gateway):
    gw = start_gateway({"KUBEPREDICT_MAX_CONCURRENT_JOBS": "2", "KUBEPREDICT_PREDICT_CHUNK_ROWS": "500"})
    api = Api(gw.url, timeout=120)
    queued, _model_id, _dataset_id = _slow_sharded_job(api, shards=3)  # two run, one waits for a slot
    pids = [_pid(s) for s in _wait_shards_scoring_some(api, queued["job_id"])]
    r = api.http.delete(f"/function/result/{queued['job_id']}")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "shard workers still alive 15 s after cancel"
    time.sleep(1.5)  # a few dispatcher rounds: nothing new may start
    job = api.job(queued["job_id"], limit=0)
    assert job["status"] == "cancelled"
    assert [s["status"] for s in job["shard_status"]] == ["cancelled"] * 3
    assert all(s["worker"] is None or _pid(s) in pids for s in job["shard_status"])


def _wait_shards_scoring_some(api: Api, job_id: str, timeout: float = 90) -> list[dict]:
    """Until the shards that got a slot (two of three) score rows; return those."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.job(job_id, limit=0)
        running = [
            s for s in job.get("shard_status") or [] if s["status"] == "running" and s["worker"] and s["rows_done"] > 0
        ]
        if len(running) == 2:
            return running
        time.sleep(0.05)
    raise AssertionError(f"two shards of {job_id} never ran together")
