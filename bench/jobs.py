"""Waiting for a job and timing it, for every benchmark."""

from __future__ import annotations

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
