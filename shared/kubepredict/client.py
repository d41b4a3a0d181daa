"""A small HTTP client for the gateway, used by the CLI commands and ``make demo``."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx

from .errors import KubepredictError

FINISHED = ("succeeded", "failed", "cancelled")


class ApiError(KubepredictError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}", code=code)
        self.status = status


class Client:
    def __init__(self, gateway: str, token: str | None = None, timeout: float = 120.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=gateway.rstrip("/"), headers=headers, timeout=timeout)

    def _check(self, resp: httpx.Response):
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ApiError(resp.status_code, err.get("code", "error"), err.get("message", ""))
            except (ValueError, KeyError, TypeError):
                raise ApiError(resp.status_code, "http_error", resp.text[:300]) from None
        return resp

    def upload(self, path: Path, name: str | None = None, on_progress=None) -> dict:
        """Stream a CSV file to the upload function; ``on_progress(bytes_sent)`` after each chunk."""
        size = path.stat().st_size

        def chunks():
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(1024 * 1024):
                    sent += len(chunk)
                    yield chunk
                    if on_progress:
                        on_progress(sent)

        resp = self.http.post(
            "/function/upload",
            params={"name": name or path.stem},
            content=chunks(),
            headers={"Content-Type": "text/csv", "Content-Length": str(size)},
        )
        return self._check(resp).json()

    def train(self, body: dict) -> dict:
        return self._check(self.http.post("/function/train", json=body)).json()

    def predict(self, body: dict) -> dict:
        return self._check(self.http.post("/function/predict", json=body)).json()

    def forecast(self, body: dict) -> dict:
        return self._check(self.http.post("/function/predict/forecast", json=body)).json()

    def job(self, job_id: str, **query) -> dict:
        return self._check(self.http.get(f"/function/result/{job_id}", params=query)).json()

    def get(self, path: str, **query) -> dict:
        return self._check(self.http.get(path, params=query)).json()

    def aliases(self, name: str) -> dict:
        return self.get(f"/function/train/{quote(name, safe='')}/aliases")

    def set_alias(self, name: str, alias: str, version: int) -> dict:
        path = f"/function/train/{quote(name, safe='')}/aliases/{quote(alias, safe='')}"
        return self._check(self.http.put(path, json={"version": version})).json()

    def delete_alias(self, name: str, alias: str) -> None:
        self._check(self.http.delete(f"/function/train/{quote(name, safe='')}/aliases/{quote(alias, safe='')}"))

    def bundle(self, model_id: str) -> bytes:
        return self._check(self.http.get(f"/function/train/{quote(model_id, safe='')}/bundle")).content

    def import_bundle(self, data: bytes, name: str | None = None) -> dict:
        params = {"name": name} if name else {}
        headers = {"Content-Type": "application/zip"}
        resp = self.http.post("/function/train/import", params=params, content=data, headers=headers)
        return self._check(resp).json()

    def csv(self, job_id: str) -> bytes:
        return self._check(self.http.get(f"/function/result/{job_id}", params={"format": "csv"})).content

    def wait(self, job_id: str, on_progress=None, timeout: float = 3600, interval: float = 0.3) -> dict:
        """Poll a job until it finishes; ``on_progress(job)`` is called on every poll."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id, limit=0)
            if on_progress:
                on_progress(job)
            if job["status"] in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(interval)
