"""``"explain": true`` over a real gateway, on both backend sets: online and batch explanations add up
to the model's answers (linear 1e-6, tree ensemble 1e-4); too many rows is a clear 400."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.api import Api, frame_csv
from tests.unit.test_explain import FEATURES, _frame

pytestmark = [pytest.mark.e2e]


def _totals(out: dict) -> np.ndarray:
    base = np.asarray(out["base"])
    return np.array([base + np.sum([r["contributions"][c] for c in out["columns"]], axis=0) for r in out["rows"]])


@pytest.fixture(scope="module")
def models(gateway_url):
    api = Api(gateway_url)
    ds = api.upload(frame_csv(_frame(400)), "explain-train")
    linear = api.train(dataset_id=ds["dataset_id"], target="amount", algorithm="linear_regression", features=FEATURES)
    logistic = api.train(
        dataset_id=ds["dataset_id"], target="label", algorithm="logistic_regression", features=FEATURES
    )
    forest = api.train(
        dataset_id=ds["dataset_id"],
        target="label",
        algorithm="random_forest",
        params={"n_estimators": 30, "n_jobs": 1},
        features=FEATURES,
    )
    for q in (linear, logistic, forest):
        assert api.wait(q["job_id"])["status"] == "succeeded"
    return {"dataset": ds["dataset_id"], "linear": linear, "logistic": logistic, "forest": forest}


def _records(n: int, seed: int = 9) -> list[dict]:
    frame = _frame(n, seed=seed)[FEATURES]
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def test_online_linear_regression_adds_up_to_the_prediction(gateway_url, models):
    api = Api(gateway_url)
    out = api.online(models["linear"]["model_id"], instances=_records(10), explain=True)
    ex = out["explanations"]
    assert ex["method"] == "linear" and ex["scale"] == "value" and ex["columns"] == FEATURES
    assert np.abs(_totals(ex)[:, 0] - np.asarray(out["predictions"])).max() < 1e-6
    assert "explanations" not in api.online(models["linear"]["model_id"], instances=_records(2))


def test_online_logistic_regression_log_odds_give_the_probabilities(gateway_url, models):
    out = Api(gateway_url).online(models["logistic"]["model_id"], instances=_records(10), explain=True)
    ex = out["explanations"]
    assert ex["scale"] == "log-odds" and ex["outputs"] == [out["classes"][1]]
    p = 1 / (1 + np.exp(-_totals(ex)[:, 0]))
    assert np.abs(p - np.asarray(out["probabilities"])[:, 1]).max() < 1e-6  # answers are rounded to 6 decimals


def test_online_random_forest_adds_up_to_the_probabilities(gateway_url, models):
    out = Api(gateway_url).online(models["forest"]["model_id"], instances=_records(10), explain=True)
    ex = out["explanations"]
    assert ex["method"] == "tree" and ex["scale"] == "probability" and ex["outputs"] == out["classes"]
    assert np.abs(_totals(ex) - np.asarray(out["probabilities"])).max() < 1e-4


def test_batch_explanations_add_up_to_the_stored_predictions(gateway_url, models):
    api = Api(gateway_url)
    small = api.upload(frame_csv(_frame(20, seed=3)), "explain-small")
    r = api.http.post(
        "/function/predict",
        json={"model_id": models["linear"]["model_id"], "dataset_id": small["dataset_id"], "explain": True},
    )
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["job_id"])
    assert job["status"] == "succeeded", job
    ex = job["summary"]["explanations"]
    predictions = [p["prediction"] for p in api.all_predictions(job["job_id"], page=100)]
    assert len(ex["rows"]) == 20
    assert np.abs(_totals(ex)[:, 0] - np.asarray(predictions)).max() < 1e-6


def test_too_many_rows_to_explain_is_a_400_and_queues_nothing(gateway_url, models):
    api = Api(gateway_url)
    model_id = models["forest"]["model_id"]
    r = api.http.post("/function/predict", json={"model_id": model_id, "instances": _records(101), "explain": True})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "too_many_rows_to_explain" and err["details"] == {"rows": 101, "limit": 100}
    before = api.http.get("/function/predict", params={"limit": 1}).json()["total"]
    r = api.http.post(
        "/function/predict", json={"model_id": model_id, "dataset_id": models["dataset"], "explain": True}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_rows_to_explain", r.text
    assert api.http.get("/function/predict", params={"limit": 1}).json()["total"] == before
    for bad in ("yes", 1, None):
        r = api.http.post("/function/predict", json={"model_id": model_id, "instances": _records(1), "explain": bad})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "explain", (bad, r.text)
