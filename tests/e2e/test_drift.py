"""Drift on every batch prediction, over a real gateway and worker processes, on both backend sets.

An iris-like dataset (iris rows drawn with replacement plus a little noise: iris's own 30-row held-out
split is too small for a ten-bin PSI, see tests/unit/test_drift.py) trains a model; an unshifted sample
stays below PSI 0.1 on every feature; the same sample with one feature shifted by +3 standard deviations
passes 0.25 on that feature, emits ``model.drift_detected`` and shows in /metrics — whole or sharded.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.api import Api, frame_csv
from tests.unit.test_drift import IRIS, iris_like

pytestmark = [pytest.mark.e2e]


def _catalog(gw):
    from kubepredict.catalog import open_catalog

    url = gw.env.get("KUBEPREDICT_DATABASE_URL") or f"sqlite:///{gw.data_dir / 'kubepredict.db'}"
    return open_catalog(url, create=False)


def _events(gw, job_id: str) -> list[dict]:
    catalog = _catalog(gw)
    try:
        return [json.loads(p) for _t, p in catalog.events_for(job_id)]
    finally:
        catalog.dispose()


def _psi(job: dict) -> dict:
    return {f["feature"]: f["psi"] for f in job["summary"]["drift"]["features"]}


def test_shifted_feature_is_detected_and_unshifted_sample_is_not(gateway_proc):
    api = Api(gateway_proc.url)
    train = api.upload(frame_csv(iris_like(3000, 1)), "drift-iris")
    q = api.train(dataset_id=train["dataset_id"], target="species", algorithm="logistic_regression", name="drift-iris")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    same = iris_like(1000, 2)
    shifted = same.copy()
    shifted["petal_width"] = shifted["petal_width"] + 3 * IRIS["petal_width"].std()
    same_ds = api.upload(frame_csv(same), "drift-same")
    shifted_ds = api.upload(frame_csv(shifted), "drift-shifted")

    calm = api.predicted(q["model_id"], same_ds["dataset_id"])
    drift = calm["summary"]["drift"]
    assert drift["available"] and not drift["detected"] and drift["rows"] == 1000
    assert all(v < 0.1 for v in _psi(calm).values()), _psi(calm)
    assert "kubepredict.model.drift_detected" not in [e["type"] for e in _events(gateway_proc, calm["job_id"])]

    for shards in (None, 3):
        job = api.predicted(q["model_id"], shifted_ds["dataset_id"], shards=shards)
        drift = job["summary"]["drift"]
        assert drift["detected"] and drift["worst_feature"] == "petal_width", drift
        assert _psi(job)["petal_width"] > 0.25
        assert all(v < 0.1 for k, v in _psi(job).items() if k != "petal_width")
        events = [e for e in _events(gateway_proc, job["job_id"]) if e["type"] == "kubepredict.model.drift_detected"]
        assert len(events) == 1, events
        data = events[0]["data"]
        assert data["model_id"] == q["model_id"] and [f["feature"] for f in data["features"]] == ["petal_width"]
        if shards:
            assert job["shards"] == 3

    families = text_string_to_metric_families(api.http.get("/metrics").text)
    psi = {
        s.labels["feature"]: s.value
        for f in families
        if f.name == "kubepredict_feature_drift_psi"
        for s in f.samples
        if s.labels.get("model") == "drift-iris"
    }
    assert psi["petal_width"] > 0.25 and psi["sepal_length"] < 0.1


def test_model_without_profile_reports_drift_absent(gateway_proc):
    """A model trained before profiles existed (its profile object removed here) still predicts; drift says why not."""
    from kubepredict.config import Settings
    from kubepredict.ml.profile import profile_key
    from kubepredict.storage import open_storage

    api = Api(gateway_proc.url)
    ds = api.upload(frame_csv(iris_like(200, 5)), "drift-old")
    q = api.train(dataset_id=ds["dataset_id"], target="species", algorithm="logistic_regression")
    assert api.wait(q["job_id"])["status"] == "succeeded"
    settings = Settings.from_env(gateway_proc.env, data_dir=gateway_proc.data_dir)
    storage = open_storage(settings.storage_url, settings)
    assert storage.exists(profile_key(q["model_id"]))
    storage.delete(profile_key(q["model_id"]))
    job = api.predicted(q["model_id"], ds["dataset_id"])
    assert job["summary"]["drift"]["available"] is False
    assert job["summary"]["drift"]["code"] == "no_profile" and "retrain" in job["summary"]["drift"]["reason"]
    assert job["summary"]["rows"] == 200
