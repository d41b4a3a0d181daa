"""Upload → train → batch predict → read back (paginated, CSV), online == batch — over HTTP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris, make_blobs

from tests.e2e.api import Api, frame_csv

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(gateway_url):
    return Api(gateway_url)


def _roundtrip(api: Api, frame: pd.DataFrame, name: str, predict_frame: pd.DataFrame, **train):
    ds = api.upload(frame_csv(frame), name)
    assert ds["rows"] == len(frame) and [c["name"] for c in ds["columns"]] == list(frame.columns)
    queued = api.train(dataset_id=ds["dataset_id"], name=name, **train)
    job = api.wait(queued["job_id"])
    assert job["status"] == "succeeded", job
    model = api.http.get(f"/function/train/{queued['model_id']}").json()
    assert model["status"] == "ready" and model["version"] >= 1
    new = api.upload(frame_csv(predict_frame), name + "-new")
    pjob = api.wait(api.predict(queued["model_id"], new["dataset_id"])["job_id"])
    assert pjob["status"] == "succeeded", pjob
    assert pjob["summary"]["rows"] == len(predict_frame)
    rows = api.all_predictions(pjob["job_id"])
    assert [r["row"] for r in rows] == list(range(len(predict_frame)))
    csv_rows = api.csv_rows(pjob["job_id"])
    assert len(csv_rows) == len(predict_frame)
    assert [str(r["prediction"]) for r in rows] == [r["prediction"] for r in csv_rows]
    return job, model, rows, csv_rows


def _online_matches(api: Api, model: dict, predict_frame: pd.DataFrame, rows: list[dict]):
    records = predict_frame.head(25).replace({np.nan: None}).to_dict(orient="records")
    online = api.online(model["model_id"], instances=records)
    assert online["predictions"] == [r["prediction"] for r in rows[:25]]
    split = api.online(
        model["model_id"],
        dataframe_split={
            "columns": list(predict_frame.columns),
            "data": predict_frame.head(25).replace({np.nan: None}).values.tolist(),
        },
    )
    assert split["predictions"] == online["predictions"]
    if "probabilities" in online:
        assert online["probabilities"] == [r["probabilities"] for r in rows[:25]]
    return online


def test_multiclass_classification_iris(api):
    iris = load_iris(as_frame=True)
    frame = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["target"] = [iris.target_names[t] for t in iris.target]
    job, model, rows, _ = _roundtrip(
        api,
        frame,
        "iris",
        frame.drop(columns=["target"]),
        target="target",
        algorithm="random_forest",
        params={"n_estimators": 100},
    )
    m = job["metrics"]
    assert m["accuracy"] >= 0.9 and 0 <= m["f1_macro"] <= 1
    assert len(m["confusion_matrix"]) == 3 and sorted(m["labels"]) == ["setosa", "versicolor", "virginica"]
    assert set(m["feature_importance"]) == set(frame.columns) - {"target"}
    assert model["task"] == "classification" and sorted(model["classes"]) == sorted(m["labels"])
    assert sum(r["prediction"] == t for r, t in zip(rows, frame["target"], strict=True)) / len(rows) >= 0.9
    online = _online_matches(api, model, frame.drop(columns=["target"]), rows)
    assert all(abs(sum(p) - 1) < 1e-3 for p in online["probabilities"])


def test_regression_diabetes(api):
    d = load_diabetes(as_frame=True)
    frame = d.frame
    job, model, rows, _ = _roundtrip(
        api,
        frame,
        "diabetes",
        frame.drop(columns=["target"]).iloc[:120],
        target="target",
        algorithm="ridge",
        params={"alpha": 1.0},
    )
    m = job["metrics"]
    assert model["task"] == "regression"
    assert 0.3 <= m["r2"] <= 1 and m["mae"] > 0 and m["rmse"] >= m["mae"]
    pva = m["predicted_vs_actual"]
    assert 0 < len(pva["actual"]) == len(pva["predicted"]) == m["test_rows"]
    assert all(isinstance(r["prediction"], float) for r in rows)
    _online_matches(api, model, frame.drop(columns=["target"]).iloc[:120], rows)


def test_clustering(api):
    X, _ = make_blobs(n_samples=300, centers=3, n_features=4, random_state=1)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    job, model, rows, _ = _roundtrip(
        api, frame, "blobs", frame.iloc[:90], task="clustering", algorithm="kmeans", params={"n_clusters": 3}
    )
    m = job["metrics"]
    assert sum(m["cluster_sizes"].values()) == 300 and len(m["cluster_sizes"]) == 3
    assert m["silhouette"] > 0.5
    assert {r["prediction"] for r in rows} <= {0, 1, 2}
    _online_matches(api, model, frame.iloc[:90], rows)


def messy_frame(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "lyon", "nice", "lille"], n)
    age = rng.integers(18, 80, n).astype(float)
    income = rng.normal(40, 10, n).round(2)
    plan = np.where((age > 45) | (city == "nice"), "premium", "basic")
    flip = rng.random(n) < 0.05
    plan = np.where(flip, np.where(plan == "premium", "basic", "premium"), plan)
    frame = pd.DataFrame({"city": city, "age": age, "income": income, "plan": plan})
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    frame.loc[rng.random(n) < 0.1, "city"] = None
    return frame


def test_categorical_missing_values_and_string_labels(api):
    frame = messy_frame()
    ds_csv = frame_csv(frame)
    assert ",," in ds_csv  # missing values really are in the file
    job, model, rows, csv_rows = _roundtrip(
        api, frame, "messy", frame.drop(columns=["plan"]).iloc[:150], target="plan", algorithm="hist_gradient_boosting"
    )
    assert set(model["classes"]) == {"basic", "premium"}
    assert job["metrics"]["accuracy"] >= 0.75
    assert set(csv_rows[0]) >= {"city", "age", "income", "prediction", "probability_basic", "probability_premium"}
    _online_matches(api, model, frame.drop(columns=["plan"]).iloc[:150], rows)


def test_auto_algorithm_picks_a_candidate(api):
    iris = load_iris(as_frame=True)
    frame = iris.frame
    ds = api.upload(frame_csv(frame), "iris-auto")
    job = api.wait(
        api.train(dataset_id=ds["dataset_id"], target="target", task="classification", algorithm="auto")["job_id"]
    )
    assert job["status"] == "succeeded", job
    auto = job["metrics"]["auto"]
    assert auto["chosen"] in auto["candidates"] and len(auto["candidates"]) >= 2
    assert auto["candidates"][auto["chosen"]] == max(auto["candidates"].values())


def test_model_versions_and_listing(api):
    frame = load_iris(as_frame=True).frame
    ds = api.upload(frame_csv(frame), "iris-versions")
    ids = [
        api.train(dataset_id=ds["dataset_id"], target="target", algorithm="decision_tree", name="versioned")
        for _ in range(2)
    ]
    for q in ids:
        assert api.wait(q["job_id"])["status"] == "succeeded"
    models = api.http.get("/function/train", params={"name": "versioned"}).json()["models"]
    assert sorted(m["version"] for m in models) == [1, 2]
    listing = api.http.get("/function/upload", params={"limit": 2}).json()
    assert listing["total"] >= 2 and len(listing["datasets"]) == 2
