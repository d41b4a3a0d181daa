"""Orphans (issue 16): failed uploads leave nothing, and what a killed process left (objects no catalogue row
owns, staging files) is found by ``find_orphans`` and removed by ``sweep`` / ``kubepredict gc`` once older than
the grace period, never what a live dataset or model (or an upload in progress) owns."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.test import Client

from kubepredict.bootstrap import bootstrap
from kubepredict.cli import main
from kubepredict.config import Settings
from kubepredict.runner.worker import run_worker
from kubepredict.runtimes.gateway import Gateway
from kubepredict.services.orphans import find_orphans, sweep

REPO = Path(__file__).resolve().parents[2]
IRIS = (REPO / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
HOUR = 3600.0


@pytest.fixture
def world(tmp_path):
    svc = bootstrap(Settings(data_dir=tmp_path))
    client = Client(Gateway(svc))
    ds = client.post("/function/upload?name=iris", data=IRIS, headers={"Content-Type": "text/csv"}).get_json()
    q = client.post(
        "/function/train", json={"dataset_id": ds["dataset_id"], "target": "species", "algorithm": "decision_tree"}
    ).get_json()
    assert run_worker(svc, q["job_id"]) == 0
    yield svc, client, ds["dataset_id"], q["model_id"]
    svc.catalog.dispose()


def _age(root: Path, seconds: float) -> None:
    """Make every file under ``root`` look ``seconds`` old."""
    past = time.time() - seconds
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _leave_orphans(svc) -> set[str]:
    """What a kill -9 leaves: a dataset folder and a model folder without rows, and a staging file."""
    svc.storage.put_bytes("datasets/ds_killed/data.csv", b"a,b\n1,2\n")
    svc.storage.put_bytes("datasets/ds_killed/data.parquet", b"PAR1")
    svc.storage.put_bytes("models/mdl_killed/model.skops", b"half")
    staged = Path(svc.storage.staging_file())
    staged.write_bytes(b"spooled upload")
    return {
        "datasets/ds_killed/data.csv",
        "datasets/ds_killed/data.parquet",
        "models/mdl_killed/model.skops",
        staged.name,
    }


def test_find_orphans_lists_only_unowned_objects_past_the_grace_period(world):
    svc, _, dataset_id, model_id = world
    orphans = _leave_orphans(svc)
    root = svc.storage.root
    assert find_orphans(svc) == []  # all just written: an upload in progress looks like this
    _age(root, 2 * HOUR)
    assert set(find_orphans(svc)) == orphans  # live dataset and model folders are owned, whatever their age
    assert find_orphans(svc, grace_seconds=3 * HOUR) == []
    young = {"datasets/ds_uploading/data.csv"}
    svc.storage.put_bytes("datasets/ds_uploading/data.csv", b"x\n1\n")
    assert set(find_orphans(svc)) == orphans and set(find_orphans(svc, grace_seconds=0)) == orphans | young


def test_sweep_dry_run_removes_nothing_then_sweep_removes_orphans_and_their_folders(world):
    svc, client, dataset_id, model_id = world
    orphans = _leave_orphans(svc)
    root = svc.storage.root
    _age(root, 2 * HOUR)
    before = _files(root)
    dry = sweep(svc, dry_run=True)
    assert set(dry.found) == orphans and dry.removed == 0 and _files(root) == before
    done = sweep(svc)
    assert set(done.found) == orphans and done.removed == len(orphans) and not done.failed
    left = _files(root)
    assert not any("killed" in f or ".tmp-" in f for f in left), left  # files and their empty folders
    assert find_orphans(svc, grace_seconds=0) == []
    # What rows own is intact: the dataset and model still serve.
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    assert client.post("/function/predict", json={"model_id": model_id, "instances": [row]}).status_code == 200
    assert client.get(f"/function/upload/{dataset_id}").status_code == 200


@pytest.mark.parametrize("body", [b"a,b\n1,2\n3,4,5,6\n", b"a,a\n1,2\n", b"a,b\n"])
def test_a_failed_upload_leaves_no_object_folder_or_staging_file(tmp_path, body):
    svc = bootstrap(Settings(data_dir=tmp_path))
    client = Client(Gateway(svc))
    before = _files(svc.storage.root)
    r = client.post("/function/upload", data=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 400
    assert _files(svc.storage.root) == before
    svc.catalog.dispose()


def test_deleting_a_dataset_removes_its_folder(world):
    svc, client, dataset_id, _ = world
    ds = client.post("/function/upload?name=again", data=IRIS, headers={"Content-Type": "text/csv"}).get_json()
    assert (svc.storage.root / "datasets" / ds["dataset_id"]).is_dir()
    assert client.delete(f"/function/upload/{ds['dataset_id']}").status_code == 204
    assert not (svc.storage.root / "datasets" / ds["dataset_id"]).exists()


def test_gc_command_dry_run_then_remove(world, monkeypatch):
    svc, _, _, _ = world
    orphans = _leave_orphans(svc)
    _age(svc.storage.root, 2 * HOUR)
    data_dir = str(svc.settings.data_dir)
    for name in ("KUBEPREDICT_DATABASE_URL", "KUBEPREDICT_STORAGE_URL", "KUBEPREDICT_ORPHAN_GRACE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    dry = CliRunner().invoke(main, ["gc", "--data-dir", data_dir, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert {line.split()[-1] for line in dry.output.splitlines() if line.startswith("would remove")} == orphans
    assert "4 orphaned objects found" in dry.output and set(find_orphans(svc)) == orphans
    young = CliRunner().invoke(main, ["gc", "--data-dir", data_dir, "--grace-seconds", str(3 * HOUR)])
    assert young.exit_code == 0 and "0 orphaned objects removed" in young.output
    done = CliRunner().invoke(main, ["gc", "--data-dir", data_dir])
    assert done.exit_code == 0 and "4 orphaned objects removed" in done.output, done.output
    assert find_orphans(svc, grace_seconds=0) == []


def test_the_gateway_start_sweeps_in_the_background(world):
    from kubepredict.services import orphans as module

    svc, _, _, _ = world
    orphans = _leave_orphans(svc)
    _age(svc.storage.root, 2 * HOUR)
    module.sweep_in_background(svc)
    deadline = time.monotonic() + 10
    while find_orphans(svc) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert find_orphans(svc) == [] and orphans


def test_prediction_rows_of_a_failed_job_are_reported_and_swept(world):
    import pyarrow as pa

    svc, _, dataset_id, model_id = world
    svc.catalog.enqueue(
        job={
            "job_id": "job_p",
            "kind": "predict",
            "model_id": model_id,
            "dataset_id": dataset_id,
            "max_attempts": 1,
            "request": "{}",
        }
    )
    row = svc.catalog.claim("job_p", worker="w")
    svc.catalog.insert_prediction_batch("job_p", 0, pa.array([1, 2]), pa.nulls(2, type=pa.list_(pa.float64())))
    svc.catalog.jobs._fail("job_p", row.attempt, "insufficient_storage", "full", drop_predictions=False)  # a full disk
    assert find_orphans(svc) == ["predictions/job_p"]
    assert sweep(svc, dry_run=True).removed == 0 and svc.catalog.count_predictions("job_p") == 2
    assert sweep(svc).removed == 1 and svc.catalog.count_predictions("job_p") == 0
    assert find_orphans(svc, grace_seconds=0) == []


def test_a_failed_models_leftover_artefact_is_an_orphan_a_live_ones_is_not(world):
    svc, client, dataset_id, model_id = world
    q = client.post("/function/train", json={"dataset_id": dataset_id, "target": "species"}).get_json()
    row = svc.catalog.claim(q["job_id"], worker="w")
    svc.storage.put_bytes(f"models/{q['model_id']}/model.skops", b"half written")  # then the job fails for good
    svc.catalog.jobs._fail(q["job_id"], row.attempt, "worker_crashed", "killed", drop_predictions=False)
    assert svc.catalog.get_model(q["model_id"])["status"] == "failed"
    _age(svc.storage.root, 2 * HOUR)
    assert find_orphans(svc) == [f"models/{q['model_id']}/model.skops"]
    assert sweep(svc).removed == 1
    assert find_orphans(svc, grace_seconds=0) == []
    assert svc.storage.exists(svc.catalog.get_model_row(model_id).artifact_key)  # the ready model keeps its file
