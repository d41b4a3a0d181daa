"""Small helpers for end-to-end tests over HTTP."""

from __future__ import annotations

import csv
import io
import time

import httpx

FINISHED = ("succeeded", "failed", "cancelled")


class Api:
    def __init__(self, base: str, timeout: float = 60):
        self.http = httpx.Client(base_url=base, timeout=timeout)

    def upload(self, data: bytes | str, name: str, content_type: str = "text/csv") -> dict:
        body = data.encode() if isinstance(data, str) else data
        r = self.http.post(
            "/function/upload", params={"name": name}, content=body, headers={"Content-Type": content_type}
        )
        assert r.status_code == 201, r.text
        return r.json()

    def train(self, **body) -> dict:
        r = self.http.post("/function/train", json=body)
        assert r.status_code == 202, r.text
        return r.json()

    def predict(self, model_id: str, dataset_id: str) -> dict:
        r = self.http.post("/function/predict", json={"model_id": model_id, "dataset_id": dataset_id})
        assert r.status_code == 202, r.text
        return r.json()

    def predicted(self, model_id: str, dataset_id: str, shards: int | None = None) -> dict:
        """Run a batch prediction (in ``shards`` if given) and return the job, which must have succeeded."""
        body = {"model_id": model_id, "dataset_id": dataset_id, **({"shards": shards} if shards else {})}
        r = self.http.post("/function/predict", json=body)
        assert r.status_code == 202, r.text
        job = self.wait(r.json()["job_id"])
        assert job["status"] == "succeeded", job
        return job

    def online(self, model_id: str, **body) -> dict:
        r = self.http.post("/function/predict", json={"model_id": model_id, **body})
        assert r.status_code == 200, r.text
        return r.json()

    def job(self, job_id: str, **query) -> dict:
        r = self.http.get(f"/function/result/{job_id}", params=query)
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id, limit=0)
            if job["status"] in FINISHED:
                return job
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")

    def all_predictions(self, job_id: str, page: int = 37) -> list[dict]:
        rows, offset = [], 0
        while True:
            p = self.job(job_id, offset=offset, limit=page)["predictions"]
            rows += p["rows"]
            offset += page
            if offset >= p["total"]:
                return rows

    def csv_rows(self, job_id: str) -> list[dict]:
        r = self.http.get(f"/function/result/{job_id}", params={"format": "csv"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(r.text)))


def frame_csv(frame) -> str:
    return frame.to_csv(index=False)
