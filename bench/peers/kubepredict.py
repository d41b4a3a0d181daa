"""Kubepredict's side: the embedded gateway (what ``make run`` runs), the iris models trained through the
HTTP API, their artifacts loaded for export, and the OpenFaaS function server (template ``index.py``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import httpx

from .procs import ServerProcess, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "shared" / "kubepredict" / "data" / "iris.csv"
TEMPLATE = REPO / "template" / "kubepredict-python3-http"
PREDICT_FUNCTION = REPO / "functions" / "predict"

# name → (algorithm, params); the names are also the MLServer model names.
MODELS = {"iris-lr": ("logistic_regression", {}), "iris-rf": ("random_forest", {"n_estimators": 100})}


def clean_env() -> dict:
    """Our environment without KUBEPREDICT_* settings, so nothing points the run at another catalogue."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KUBEPREDICT_")}


def start_gateway(data_dir: Path, log: Path) -> tuple[ServerProcess, str]:
    """``kubepredict serve --port P --data-dir DATA`` with default settings."""
    port = free_port()
    cmd = [sys.executable, "-m", "kubepredict.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    url = f"http://127.0.0.1:{port}"
    return ServerProcess("kubepredict serve", cmd, cwd=REPO, env=clean_env(), log=log).start(f"{url}/healthz"), url


def wait_job(http: httpx.Client, job_id: str, timeout: float = 600) -> dict:
    job: dict = {}

    def finished() -> bool:
        nonlocal job
        job = http.get(f"/function/result/{job_id}", params={"limit": 0}).json()
        return job.get("status") in ("succeeded", "failed", "cancelled")

    wait_until(finished, timeout=timeout, what=f"job {job_id}", interval=0.2)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
    return job


def train_models(http: httpx.Client) -> dict[str, dict]:
    """Upload the bundled iris CSV and train every model of ``MODELS``; name → model object."""
    up = http.post(
        "/function/upload", params={"name": "iris"}, content=IRIS.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    up.raise_for_status()
    queued = {}
    for name, (algorithm, params) in MODELS.items():
        r = http.post(
            "/function/train",
            json={
                "dataset_id": up.json()["dataset_id"],
                "target": "species",
                "algorithm": algorithm,
                "params": params,
                "name": name,
            },
        )
        r.raise_for_status()
        queued[name] = r.json()
    models = {}
    for name, q in queued.items():
        wait_job(http, q["job_id"])
        models[name] = http.get(f"/function/train/{q['model_id']}").json()
    return models


def iris_labels() -> list[str]:
    """The bundled iris CSV's species column, in file order."""
    import csv

    with open(IRIS, newline="") as f:
        return [row["species"] for row in csv.DictReader(f)]


def load_pipeline(data_dir: Path, model: dict):
    """The stored artifact of ``model``, verified and loaded by ``kubepredict.ml.artifacts.load_model``
    (bytes from the storage folder, SHA-256 as the API reports it)."""
    from kubepredict.bootstrap import bootstrap
    from kubepredict.config import Settings
    from kubepredict.ml.artifacts import load_model

    svc = bootstrap(Settings(data_dir=data_dir), create_schema=False)
    try:
        row = svc.catalog.get_model_row(model["model_id"])
        return load_model(svc.storage.get(row.artifact_key), model["sha256"])
    finally:
        svc.catalog.dispose()


def function_dir(root: Path) -> Path:
    """The container's layout: ``index.py`` next to ``function/`` (the predict function's folder)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEMPLATE / "index.py", root / "index.py")
    shutil.copytree(
        PREDICT_FUNCTION, root / "function", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "function" / "__init__.py").touch()
    return root


def start_function(root: Path, data_dir: Path, log: Path) -> tuple[ServerProcess, str]:
    """``python index.py`` serving ``function.handler`` on the gateway's catalogue and object store.

    The port reaches index.py the way of-watchdog's does: ``upstream_url`` (the Dockerfile sets it to
    ``http://127.0.0.1:5000``)."""
    from kubepredict.config import Settings

    settings = Settings(data_dir=data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **clean_env(),
        "KUBEPREDICT_DATABASE_URL": settings.database_url,
        "KUBEPREDICT_STORAGE_URL": settings.storage_url,
        "upstream_url": url,
        "HOME": str(root),
    }
    server = ServerProcess(
        "OpenFaaS function (index.py)", [sys.executable, "index.py"], cwd=function_dir(root), env=env, log=log
    )
    # GET on the predict function lists prediction jobs: 200 once the handler and catalogue answer.
    return server.start(f"{url}/", timeout=120), url
