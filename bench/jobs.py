"""Waiting for a job and timing it, for every benchmark."""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime

import httpx


def wait(http: httpx.Client, job_id: str, poll: float = 0.25) -> dict:
    """The job once it is over. Polls gently: a client polling 20 times a second takes CPU from the
    workers it measures."""
    while True:
        job = http.get(f"/function/result/{job_id}", params={"limit": 0}).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(poll)


def job_seconds(job: dict) -> float:
    """Submit → succeeded by the server's own clock (created_at → finished_at): exact whatever the polling."""

    def at(key: str) -> float:
        return datetime.fromisoformat(job[key].replace("Z", "+00:00")).timestamp()

    return at("finished_at") - at("created_at")


REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))


def alternate(ours, reference, repeat: int = REPEAT) -> tuple[list[float], list[float]]:
    """Time ``ours`` and ``reference`` in turn ``repeat`` times (each returns its seconds).

    This VM's speed moves from one minute to the next (other tenants, pages handed back to the host):
    one measurement of each side compares two different machines. Alternating and taking the medians
    compares the two under the same conditions; the table shows every run, not only the medians."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(max(1, repeat)):
        a.append(ours())
        b.append(reference())
    return a, b


def runs(values: list[float]) -> str:
    """``median (all runs)`` in seconds, for a table cell."""
    return f"median {statistics.median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"


def train_iris(http: httpx.Client, iris) -> tuple[dict, dict]:
    """Upload the iris frame and train a logistic regression on it; returns ``(queued, finished job)``."""
    csv = iris.to_csv(index=False)
    headers = {"Content-Type": "text/csv"}
    ds = http.post("/function/upload", params={"name": "iris"}, content=csv, headers=headers).json()
    queued = http.post(
        "/function/train",
        json={"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "logistic_regression"},
    ).json()
    return queued, wait(http, queued["job_id"])
