"""Portable bundles (export, import through the same checks) and ``kubepredict verify``."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubepredict.bootstrap import bootstrap
from kubepredict.cli import main
from kubepredict.codecs.table import Table
from kubepredict.config import Settings
from kubepredict.errors import BundleRejected, Conflict
from kubepredict.ml import artifacts
from kubepredict.runner.worker import run_worker
from kubepredict.services import bundles, datasets, reproduce, serving, training
from tests.unit.skops_craft import call, swap

IRIS = (Path(__file__).resolve().parents[2] / "shared" / "kubepredict" / "data" / "iris.csv").read_bytes()
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def svc(tmp_path):
    return bootstrap(Settings(data_dir=tmp_path))


def _train(svc, name="flowers", algorithm="random_forest", **extra) -> str:
    ds = datasets.upload_dataset(svc, io.BytesIO(IRIS), name="iris")
    job, _ = training.submit_train(
        svc, {"dataset_id": ds["dataset_id"], "target": "species", "algorithm": algorithm, "name": name, **extra}
    )
    assert run_worker(svc, job["job_id"]) == 0
    return job["model_id"]


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return out.getvalue()


def test_bundle_holds_artefact_digest_schema_request_dataset_and_versions(svc):
    model_id = _train(svc)
    name, data = bundles.export(svc, model_id)
    assert name == "flowers-v1.kpbundle.zip"
    files = _members(data)
    manifest = json.loads(files["manifest.json"])
    row = svc.catalog.get_model_row(model_id)
    assert artifacts.sha256_hex(files["model.skops"]) == row.artifact_sha256 == manifest["artifact"]["sha256"]
    assert files["model.skops.sha256"].decode().strip() == row.artifact_sha256
    assert [f["name"] for f in manifest["feature_schema"]] == row.features
    assert manifest["metrics"]["accuracy"] == row.metrics["accuracy"]
    assert manifest["training_request"]["algorithm"] == "random_forest"
    assert manifest["dataset"]["sha256"] == svc.catalog.get_dataset_row(row.dataset_id).sha256
    libs = manifest["environment"]["libraries"]
    assert {"scikit-learn", "numpy", "scipy", "skops"} <= set(libs) and manifest["environment"]["python"]


def test_import_round_trip_serves_the_same_answers(svc, tmp_path):
    model_id = _train(svc)
    _, data = bundles.export(svc, model_id)
    other = bootstrap(Settings(data_dir=tmp_path / "elsewhere"))
    imported = bundles.import_bundle(other, data)
    assert imported["status"] == "ready" and imported["name"] == "flowers" and imported["version"] == 1
    assert imported["sha256"] == svc.catalog.get_model_row(model_id).artifact_sha256
    a = serving.score(svc, serving.resolve(svc, model_id), Table.from_records([ROW]))
    b = serving.score(other, serving.resolve(other, "flowers"), Table.from_records([ROW]))
    assert a.predictions.tolist() == b.predictions.tolist() == ["setosa"]
    again = bundles.import_bundle(other, bundles.export(other, imported["model_id"])[1], name="copy")
    assert again["name"] == "copy"  # an imported model's own bundle keeps its request and dataset
    assert json.loads(_members(bundles.export(other, again["model_id"])[1])["manifest.json"])["dataset"]["sha256"]


def _refused(svc, data: bytes, error=BundleRejected) -> Exception:
    before = (svc.catalog.list_models(limit=100, offset=0)[1], sorted(svc.storage.list("models/")))
    with pytest.raises(error) as info:
        bundles.import_bundle(svc, data)
    after = (svc.catalog.list_models(limit=100, offset=0)[1], sorted(svc.storage.list("models/")))
    assert after == before  # nothing stored
    return info.value


def test_tampered_incompatible_and_untrusted_bundles_are_refused_and_store_nothing(svc, tmp_path):
    model_id = _train(svc)
    _, data = bundles.export(svc, model_id)
    files = _members(data)
    other = bootstrap(Settings(data_dir=tmp_path / "other"))

    flipped = bytearray(files["model.skops"])
    flipped[len(flipped) // 2] ^= 1
    assert _refused(other, _zip({**files, "model.skops": bytes(flipped)})).code == "bundle_tampered"
    assert _refused(other, b"not a zip at all").code == "bundle_rejected"
    assert _refused(other, _zip({k: v for k, v in files.items() if k != "manifest.json"})).code == "bundle_rejected"

    manifest = json.loads(files["manifest.json"])
    manifest["environment"]["libraries"]["scikit-learn"] = "0.24.2"
    exc = _refused(other, _zip({**files, "manifest.json": json.dumps(manifest).encode()}), Conflict)
    assert exc.code == "incompatible_versions" and "0.24.2" in exc.message
    assert exc.details["server"]["scikit-learn"] in exc.message

    # A consistent bundle (digests recomputed) whose artefact reaches numpy.memmap: the allow-list refuses it.
    evil = swap(files["model.skops"], "classes_", call("numpy.memmap", "/etc/passwd", "uint8", "r"))
    manifest = json.loads(files["manifest.json"])
    manifest["artifact"]["sha256"] = artifacts.sha256_hex(evil)
    forged = {
        "manifest.json": json.dumps(manifest).encode(),
        "model.skops": evil,
        "model.skops.sha256": artifacts.sha256_hex(evil).encode(),
    }
    assert _refused(other, _zip(forged)).code == "untrusted_type"


@pytest.mark.parametrize("algorithm", ["random_forest", "logistic_regression"])
def test_verify_retrains_to_identical_held_out_predictions(svc, algorithm):
    model_id = _train(svc, algorithm=algorithm)
    report = reproduce.verify(svc, model_id)
    assert report["identical"] and report["held_out_rows"] == 30 and report["mismatched_rows"] == 0


def test_verify_cli_exit_codes(svc, tmp_path, monkeypatch):
    model_id = _train(svc, params={"n_estimators": 20})
    monkeypatch.setenv("KUBEPREDICT_DATA_DIR", str(tmp_path))
    ok = CliRunner().invoke(main, ["verify", model_id, "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout[: ok.stdout.rindex("}") + 1])["identical"] is True
    # A model that was not trained from its recorded request (its artefact swapped for another fit) differs.
    other = _train(svc, name="other", algorithm="decision_tree", params={"max_depth": 1})
    row, fake = svc.catalog.get_model_row(model_id), svc.catalog.get_model_row(other)
    with svc.catalog.tx() as conn:
        from kubepredict.catalog import schema

        conn.execute(
            schema.models.update()
            .where(schema.models.c.model_id == model_id)
            .values(artifact_key=fake.artifact_key, artifact_sha256=fake.artifact_sha256)
        )
    bad = CliRunner().invoke(main, ["verify", row.model_id, "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1, bad.output
    assert json.loads(bad.stdout[: bad.stdout.rindex("}") + 1])["identical"] is False
