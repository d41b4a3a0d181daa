"""Stored models are never unpickled; a changed byte is refused with a clear error, online and in batch jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from werkzeug.test import Client

from kubepredict.bootstrap import bootstrap
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker
from kubepredict.runtimes.gateway import Gateway

REPO = Path(__file__).resolve().parents[2]
IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()


def test_no_pickle_loading_anywhere_in_the_package():
    offenders = []
    for path in (REPO / "shared" / "kubepredict").rglob("*.py"):
        text = path.read_text()
        if re.search(r"\b(pickle|cPickle|dill|cloudpickle)\.loads?\(|joblib\.load\(|torch\.load\(", text):
            offenders.append(str(path))
    assert offenders == []


@pytest.fixture
def world(tmp_path):
    svc = bootstrap(Settings(data_dir=tmp_path))
    client = Client(Gateway(svc))
    ds = client.post("/function/upload?name=iris", data=IRIS, headers={"Content-Type": "text/csv"}).get_json()
    q = client.post(
        "/function/train", json={"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "decision_tree"}
    ).get_json()
    assert run_worker(svc, q["job_id"]) == 0
    return svc, client, ds, q["model_id"]


def tamper(svc, model_id: str) -> None:
    key = svc.catalog.get_model_row(model_id).artifact_key
    path = Path(svc.storage.root) / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_artifact_refused_online(world):
    svc, client, ds, model_id = world
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    assert client.post("/function/predict", json={"model_id": model_id, "instances": [row]}).status_code == 200
    tamper(svc, model_id)
    svc.models = type(svc.models)()  # a fresh process: nothing cached
    r = client.post("/function/predict", json={"model_id": model_id, "instances": [row]})
    assert r.status_code == 500
    err = r.get_json()["error"]
    assert err["code"] == "artifact_tampered" and "sha" in err["message"].lower()
    assert "Traceback" not in r.get_data(as_text=True)


def test_tampered_artifact_fails_batch_job(world):
    svc, client, ds, model_id = world
    tamper(svc, model_id)
    svc.models = type(svc.models)()
    q = client.post("/function/predict", json={"model_id": model_id, "dataset_id": ds["dataset_id"]}).get_json()
    assert run_worker(svc, q["job_id"]) == 0
    job = client.get(f"/function/result/{q['job_id']}").get_json()
    assert job["status"] == "failed" and job["error"]["code"] == "artifact_tampered"
    assert svc.catalog.count_predictions(q["job_id"]) == 0
    events = [json.loads(p)["type"] for _, p in svc.catalog.events_for(q["job_id"])]
    assert events[-1] == "kubepredict.job.failed"


def replace_artifact(svc, model_id: str, data: bytes) -> None:
    """What the reported attack did: new bytes in the store AND their SHA-256 in the catalogue."""
    from sqlalchemy import update

    from kubepredict.catalog.schema import models
    from kubepredict.ml import sha256_hex

    key = svc.catalog.get_model_row(model_id).artifact_key
    (Path(svc.storage.root) / key).write_bytes(data)
    with svc.catalog.tx() as conn:
        conn.execute(update(models).where(models.c.model_id == model_id).values(artifact_sha256=sha256_hex(data)))
    svc.models = type(svc.models)()  # a fresh process: nothing cached


@pytest.fixture
def memmap_artifact(world, tmp_path):
    from tests.unit.skops_craft import call, swap

    svc, _, _, model_id = world
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP-SECRET")
    data = svc.storage.get(svc.catalog.get_model_row(model_id).artifact_key)
    replace_artifact(svc, model_id, swap(bytes(data), "classes_", call("numpy.memmap", str(secret), "uint8", "r")))
    return secret


def test_crafted_artifact_with_matching_hash_refused_online(world, memmap_artifact):
    _, client, _, model_id = world
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    r = client.post("/function/predict", json={"model_id": model_id, "instances": [row]})
    text = r.get_data(as_text=True)
    assert r.status_code == 500 and "TOP-SECRET" not in text and "Traceback" not in text
    err = r.get_json()["error"]
    assert err["code"] == "untrusted_type" and "numpy.memmap" in err["message"]
    assert "file system" in err["message"]


def test_crafted_artifact_with_matching_hash_fails_batch_job(world, memmap_artifact):
    svc, client, ds, model_id = world
    q = client.post("/function/predict", json={"model_id": model_id, "dataset_id": ds["dataset_id"]}).get_json()
    assert run_worker(svc, q["job_id"]) == 0
    job = client.get(f"/function/result/{q['job_id']}").get_json()
    assert job["status"] == "failed" and job["error"]["code"] == "untrusted_type"
    assert "numpy.memmap" in job["error"]["message"]
    assert svc.catalog.count_predictions(q["job_id"]) == 0
