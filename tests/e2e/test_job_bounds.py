"""Bounded jobs on the local runner: memory limit, deadline, thread clamp, parameter ceilings, resources.

A job above its memory limit or past its deadline ends ``failed`` with a reason a person reads, on its
first attempt (no retry), and the gateway keeps serving; one asking for 1,000 threads runs on its CPU
allowance; parameters that would explode and malformed ``resources`` are refused with a 400.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv

pytestmark = [pytest.mark.e2e]


def dataset(api: Api, rows: int = 4000) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 10))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    frame["y"] = (X[:, 0] + X[:, 1] ** 2 + rng.normal(size=rows) > 1).astype(int)
    return api.upload(frame_csv(frame), "bounds")["dataset_id"]


def worker_pid(api: Api, job_id: str, timeout: float = 60) -> int:
    """The pid of the job's worker once it is fitting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.job(job_id)
        if job["status"] == "running" and job["stage"] == "fitting" and job.get("worker"):
            return int(job["worker"].rsplit(":", 1)[1])
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached fitting")


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_memory_limit_fails_the_job_once_and_the_gateway_keeps_working(start_gateway):
    gw = start_gateway({"KUBEPREDICT_JOB_MEMORY_LIMIT": "600Mi", "KUBEPREDICT_JOB_MAX_ATTEMPTS": "2"})
    api = Api(gw.url)
    ds = dataset(api, rows=500)
    # Two 4096 x 4096 weight matrices with their gradients and Adam moments: about 1 GiB.
    queued = api.train(
        dataset_id=ds, target="y", algorithm="mlp", params={"hidden_layer_sizes": [4096, 4096, 4096], "max_iter": 5}
    )
    job = api.wait(queued["job_id"], timeout=120)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "memory_limit_exceeded"
    assert "used more than 600 MiB of memory (limit 600 MiB)" in job["error"]["message"]
    assert job["attempt"] == 1  # a limit breach is final: not retried
    assert api.http.get("/healthz").status_code == 200
    nxt = api.wait(api.train(dataset_id=ds, target="y", algorithm="decision_tree")["job_id"], timeout=120)
    assert nxt["status"] == "succeeded", nxt


def workers_of(job_id: str) -> list[int]:
    """Pids of the processes whose title names the job (``kubepredict worker train <job_id>``)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f" {job_id}".encode() in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_deadline_fails_a_slow_job_once_and_stops_its_worker(start_gateway):
    gw = start_gateway({"KUBEPREDICT_JOB_DEADLINE_SECONDS": "10", "KUBEPREDICT_JOB_MAX_ATTEMPTS": "2"})
    api = Api(gw.url)
    ds = dataset(api)
    queued = api.train(dataset_id=ds, target="y", algorithm="random_forest", params={"n_estimators": 5000, "n_jobs": 1})
    seen = False  # its worker, by its process title
    job, give_up = api.job(queued["job_id"]), time.monotonic() + 90
    while job["status"] in ("queued", "running") and time.monotonic() < give_up:
        seen = seen or bool(workers_of(queued["job_id"]))
        time.sleep(0.2)
        job = api.job(queued["job_id"])
    assert seen
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "deadline_exceeded"
    assert "ran longer than 10 s (limit 10 s)" in job["error"]["message"]
    assert job["attempt"] == 1 and 10 <= job["duration_seconds"] < 30
    deadline = time.monotonic() + 15
    while workers_of(queued["job_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers_of(queued["job_id"]), "the overdue job's worker still runs"
    assert api.http.get(f"/function/train/{queued['model_id']}").json()["status"] == "failed"


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.mark.slow
def test_n_jobs_is_clamped_to_the_jobs_cpu_allowance(start_gateway):
    gw = start_gateway()
    api = Api(gw.url)
    ds = dataset(api)
    queued = api.train(
        dataset_id=ds,
        target="y",
        algorithm="random_forest",
        params={"n_estimators": 300, "n_jobs": 1000},
        resources={"limits": {"cpu": "1"}},
    )
    pid = worker_pid(api, queued["job_id"])
    most = 0
    while True:
        try:
            most = max(most, threads(pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        if api.job(queued["job_id"])["status"] != "running":
            break
        time.sleep(0.05)
    job = api.wait(queued["job_id"])
    assert job["status"] == "succeeded", job
    # One fitting thread; the rest are the main thread, the heartbeat and the storage client's transfer
    # pool (S3: up to 10). Unclamped, the forest alone starts a pool of 1,000 threads.
    assert 0 < most <= 20, f"the worker ran {most} threads"
    model = api.http.get(f"/function/train/{queued['model_id']}").json()
    assert model["params"]["n_jobs"] == 1


@pytest.mark.slow
def test_a_workers_process_title_names_its_job(start_gateway):
    gw = start_gateway()
    api = Api(gw.url)
    ds = dataset(api)
    queued = api.train(dataset_id=ds, target="y", algorithm="random_forest", params={"n_estimators": 400, "n_jobs": 1})
    pid = worker_pid(api, queued["job_id"])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert f"kubepredict worker train {queued['job_id']}" in cmdline, cmdline
    api.http.delete(f"/function/result/{queued['job_id']}")


@pytest.mark.parametrize(
    "params, field",
    [
        ({"n_estimators": 1_000_000_000}, "params.n_estimators"),
        ({"n_estimators": 1e9}, "params.n_estimators"),
        ({"n_jobs": 100_000, "n_estimators": 5}, "params.n_jobs"),
    ],
)
def test_random_forest_params_above_their_ceilings_are_refused(gateway_url, params, field):
    api = Api(gateway_url)
    ds = dataset(api, rows=60)
    r = api.http.post(
        "/function/train", json={"dataset_id": ds, "target": "y", "algorithm": "random_forest", "params": params}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "param_ceiling" and error["details"]["field"] == field


@pytest.mark.parametrize("layers", [[8000, 8000], [4096] * 5, [10] * 65])
def test_mlp_layers_above_their_ceilings_are_refused(gateway_url, layers):
    api = Api(gateway_url)
    ds = dataset(api, rows=60)
    for algorithm in ("mlp", "auto"):
        r = api.http.post(
            "/function/train",
            json={"dataset_id": ds, "target": "y", "algorithm": algorithm, "params": {"hidden_layer_sizes": layers}},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "param_ceiling"


def test_ceilings_are_listed_with_the_algorithms(gateway_url):
    algorithms = Api(gateway_url).http.get("/function/train/algorithms").json()["algorithms"]
    forest = next(a for a in algorithms if a["name"] == "random_forest" and a["task"] == "classification")
    assert forest["param_ceilings"]["n_estimators"] == 5000 and "hidden_layer_sizes" not in forest["param_ceilings"]
    mlp = next(a for a in algorithms if a["name"] == "mlp")
    assert mlp["param_ceilings"]["hidden_layer_sizes"]["units_per_layer"] == 4096


@pytest.mark.parametrize(
    "resources, field",
    [
        ({"limits": {"cpu": "abc"}}, "resources.limits.cpu"),
        ({"limits": {"memory": "2Gb"}}, "resources.limits.memory"),
        ({"requests": {"memory": "-1Gi"}}, "resources.requests.memory"),
        ({"limits": {"cpu": "0"}}, "resources.limits.cpu"),
        ({"limits": {"cpu": True}}, "resources.limits.cpu"),
        ({"limits": {"nvidia.com/gpu": "1"}}, "resources.limits.nvidia.com/gpu"),
        ({"limit": {"cpu": "1"}}, "resources.limit"),
        ({"limits": "2Gi"}, "resources.limits"),
        ({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}, "resources.requests.memory"),
        ({"limits": {"memory": "1Ei"}}, "resources.limits.memory"),
        ("big", "resources"),
    ],
)
def test_malformed_resources_are_refused_at_submit(gateway_url, resources, field):
    api = Api(gateway_url)
    ds = dataset(api, rows=60)
    train = api.http.post(
        "/function/train", json={"dataset_id": ds, "target": "y", "algorithm": "decision_tree", "resources": resources}
    )
    assert train.status_code == 400, train.text
    assert train.json()["error"]["details"]["field"] == field
    model_id = api.train(dataset_id=ds, target="y", algorithm="decision_tree")["model_id"]
    api.wait(api.job(api.http.get(f"/function/train/{model_id}").json()["job_id"])["job_id"])
    predict = api.http.post("/function/predict", json={"model_id": model_id, "dataset_id": ds, "resources": resources})
    assert predict.status_code == 400, predict.text
    assert predict.json()["error"]["details"]["field"] == field
