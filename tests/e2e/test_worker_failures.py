"""Workers that die: SIGKILL mid-training ends in `failed` (no attempts left) or a retry that succeeds."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from tests.e2e.api import Api, frame_csv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def slow_dataset(rows: int = 4000) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 10))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    frame["y"] = (X[:, 0] + X[:, 1] ** 2 + rng.normal(size=rows) > 1).astype(int)
    return frame_csv(frame)


def start_slow_training(api: Api) -> dict:
    ds = api.upload(slow_dataset(), "slow")
    return api.train(
        dataset_id=ds["dataset_id"], target="y", algorithm="random_forest", params={"n_estimators": 400, "n_jobs": 1}
    )


def wait_for_fitting(api: Api, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.job(job_id)
        if job["status"] == "running" and job["stage"] == "fitting" and job.get("worker"):
            return job
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached fitting")


def kill_worker(job: dict) -> int:
    pid = int(job["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    return pid


def test_killed_worker_fails_job_when_no_attempts_left(start_gateway):
    gw = start_gateway({"KUBEPREDICT_JOB_MAX_ATTEMPTS": "1"})
    api = Api(gw.url)
    queued = start_slow_training(api)
    kill_worker(wait_for_fitting(api, queued["job_id"]))
    killed_at = time.monotonic()
    job = api.wait(queued["job_id"], timeout=30)
    assert time.monotonic() - killed_at < 10
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert "SIGKILL" in job["error"]["message"]
    model = api.http.get(f"/function/train/{queued['model_id']}").json()
    assert model["status"] == "failed"


def test_killed_worker_is_retried_and_succeeds(start_gateway):
    gw = start_gateway({"KUBEPREDICT_JOB_MAX_ATTEMPTS": "2"})
    api = Api(gw.url)
    queued = start_slow_training(api)
    first = wait_for_fitting(api, queued["job_id"])
    pid = kill_worker(first)
    job = api.wait(queued["job_id"], timeout=180)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2 and not job["worker"].endswith(f":{pid}")


def test_silent_worker_is_detected_by_heartbeat_timeout(start_gateway):
    """A worker frozen (SIGSTOP) stops heart-beating; the dispatcher gives up on it within the timeout."""
    gw = start_gateway(
        {
            "KUBEPREDICT_JOB_MAX_ATTEMPTS": "1",
            "KUBEPREDICT_HEARTBEAT_TIMEOUT_SECONDS": "3",
            "KUBEPREDICT_HEARTBEAT_SECONDS": "0.5",
        }
    )
    api = Api(gw.url)
    queued = start_slow_training(api)
    job = wait_for_fitting(api, queued["job_id"])
    pid = int(job["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGSTOP)
    try:
        job = api.wait(queued["job_id"], timeout=20)
        assert job["status"] == "failed" and job["error"]["code"] == "heartbeat_timeout"
    finally:
        os.kill(pid, signal.SIGKILL)


def test_cancel_running_job_stops_worker(start_gateway):
    gw = start_gateway()
    api = Api(gw.url)
    queued = start_slow_training(api)
    job = wait_for_fitting(api, queued["job_id"])
    pid = int(job["worker"].rsplit(":", 1)[1])
    r = api.http.delete(f"/function/result/{queued['job_id']}")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("cancelled worker still alive after 15 s")
    time.sleep(1)
    assert api.job(queued["job_id"])["status"] == "cancelled"


def test_restart_picks_up_queued_jobs(start_gateway, tmp_path):
    """Jobs queued while no dispatcher runs are started when the gateway comes back."""
    data = tmp_path / "restart"
    gw = start_gateway({"KUBEPREDICT_MAX_CONCURRENT_JOBS": "0"}, data_dir=data)
    api = Api(gw.url)
    ds = api.upload("a,b,y\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60)), "restart")
    queued = [api.train(dataset_id=ds["dataset_id"], target="y", algorithm="decision_tree") for _ in range(3)]
    time.sleep(1)
    assert all(api.job(q["job_id"])["status"] == "queued" for q in queued)
    gw.stop()
    gw2 = start_gateway({}, data_dir=data)
    api2 = Api(gw2.url)
    assert all(api2.wait(q["job_id"])["status"] == "succeeded" for q in queued)
