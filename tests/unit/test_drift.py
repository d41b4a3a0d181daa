"""Drift reports (ml/profile.py, ml/drift.py): a +3 std shift of one iris feature is caught, an unshifted
sample is not; shards' partial histograms merge into the whole job's report; categorical columns get a
chi-squared test, an "other" bucket and unseen values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kubepredict import ml
from kubepredict.ml import drift, profile
from kubepredict.runner import drift_job

IRIS = pd.read_csv(__import__("importlib.resources").resources.files("kubepredict") / "data" / "iris.csv")
FEATURES = [c for c in IRIS.columns if c != "species"]


def iris_like(n: int, seed: int) -> pd.DataFrame:
    """Rows drawn from iris (with replacement) plus a little noise: as many unshifted rows as a test needs.

    Iris itself has 150 rows; a PSI over ten decile bins of a 30-row held-out split is noise (its expected
    value with no drift at all is about (bins - 1) * (1/30 + 1/120) = 0.375), so the tests draw larger samples
    from the same distribution."""
    rng = np.random.default_rng(seed)
    rows = IRIS.iloc[rng.integers(0, len(IRIS), n)].reset_index(drop=True)
    for c in FEATURES:
        rows[c] = rows[c] + rng.normal(0, 0.05 * IRIS[c].std(), n)
    return rows


@pytest.fixture(scope="module")
def trained():
    return ml.train(
        iris_like(3000, 1), target="species", features=None, task=None, algorithm="logistic_regression", params=None
    )


def counted(result, frame: pd.DataFrame, parts: int = 1) -> dict:
    reference = json.loads(json.dumps(result.profile))  # what is stored: JSON, never pickle
    counters = []
    for chunk in np.array_split(np.arange(len(frame)), parts):
        c = drift.DriftCounter(reference)
        rows = frame.iloc[chunk]
        scored = ml.score(result.pipeline, rows, features=result.features, kinds=result.kinds, task=result.task)
        c.add(rows, scored.predictions)
        counters.append(drift_job.shard_partial(c, 0.25))
    partials = json.loads(json.dumps(counters))
    return drift_job.merged_report(partials)


def by_feature(report: dict) -> dict:
    return {f["feature"]: f for f in report["features"]}


def test_profile_is_json_with_bins_missing_rate_predictions_and_background(trained):
    p = trained.profile
    json.dumps(p, allow_nan=False)
    f = p["features"]["sepal_length"]
    assert f["kind"] == "numeric" and len(f["counts"]) == len(f["edges"]) + 1
    assert sum(f["counts"]) == f["n"] - f["missing"]
    assert p["prediction"]["kind"] == "categorical" and sum(p["prediction"]["counts"]) == 600  # the held-out split
    assert len(p["background"]["rows"]) == profile.BACKGROUND_ROWS


def test_unshifted_sample_stays_below_0_1_on_every_feature(trained):
    report = counted(trained, iris_like(1000, 2))
    assert report["available"] and not report["detected"]
    assert all(f["psi"] < 0.1 for f in report["features"]), by_feature(report)
    assert report["prediction"]["psi"] < 0.1
    assert all(f["test"]["name"] == "ks" and f["test"]["p_value"] > 0.001 for f in report["features"])


def test_three_std_shift_of_one_feature_is_detected(trained):
    frame = iris_like(1000, 3)
    frame["petal_width"] = frame["petal_width"] + 3 * IRIS["petal_width"].std()
    report = counted(trained, frame)
    features = by_feature(report)
    assert features["petal_width"]["psi"] > 0.25 and report["detected"]
    assert report["worst_feature"] == "petal_width" and report["features"][0]["feature"] == "petal_width"
    assert features["petal_width"]["test"]["p_value"] < 1e-6
    assert all(features[c]["psi"] < 0.1 for c in FEATURES if c != "petal_width")
    assert report["prediction"]["psi"] > 0.1  # the model's answers moved with it


def test_shards_merge_to_the_whole_jobs_report(trained):
    frame = iris_like(1000, 4)
    frame.loc[::7, "sepal_width"] = np.nan
    whole, sharded = counted(trained, frame), counted(trained, frame, parts=3)
    assert whole == sharded
    assert by_feature(whole)["sepal_width"]["missing_rate"]["current"] == pytest.approx(143 / 1000)


def test_categorical_chi_squared_other_bucket_and_unseen():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], 600), "x": rng.normal(size=600)})
    train["y"] = (train["x"] > 0).astype(int)
    result = ml.train(train, target="y", features=None, task=None, algorithm="logistic_regression", params=None)
    same = counted(result, train.iloc[:300])
    assert by_feature(same)["colour"]["test"]["name"] == "chi2"
    assert by_feature(same)["colour"]["unseen"] == {"count": 0, "examples": []}
    new = train.iloc[:300].copy()
    new.loc[:149, "colour"] = "purple"
    report = counted(result, new)
    colour = by_feature(report)["colour"]
    assert colour["unseen"] == {"count": 150, "examples": ["purple"]}
    assert colour["psi"] > 0.25 and colour["test"]["p_value"] < 1e-6
    assert colour["histogram"]["bins"][-1] == "other" and colour["histogram"]["current"][-1] == 150


def test_psi_of_identical_counts_is_zero_and_of_empty_is_none():
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert drift.psi([10, 20], [0, 0]) is None


def test_no_profile_is_a_reason_not_a_failure():
    report = drift_job.merged_report([{"absent": drift.absent("no profile", "no_profile")}])
    assert report == {"available": False, "code": "no_profile", "reason": "no profile"}


def test_psi_metric_comes_from_each_model_names_last_batch_prediction(tmp_path):
    from datetime import timedelta

    from prometheus_client.parser import text_string_to_metric_families

    from kubepredict import metrics
    from kubepredict.catalog import open_catalog, schema
    from kubepredict.ids import utcnow

    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    now = utcnow()

    def model(model_id, name, version):
        return dict(
            model_id=model_id,
            name=name,
            version=version,
            status="ready",
            task="classification",
            algorithm="x",
            params={},
            dataset_id="ds_1",
            created_at=now,
        )

    def job(job_id, model_id, minutes_ago, psi):
        drift_report = {"available": True, "features": [{"feature": "a", "psi": psi}, {"feature": "b", "psi": 0.01}]}
        return dict(
            job_id=job_id,
            kind="predict",
            status="succeeded",
            progress=1.0,
            model_id=model_id,
            attempt=1,
            max_attempts=1,
            request={},
            created_at=now,
            started_at=now - timedelta(minutes=minutes_ago + 1),
            finished_at=now - timedelta(minutes=minutes_ago),
            rows=10,
            summary={"rows": 10, "drift": drift_report if psi is not None else {"available": False}},
        )

    try:
        with catalog.db.tx() as conn:
            conn.execute(
                schema.models.insert(), [model("mdl_1", "iris", 1), model("mdl_2", "iris", 2), model("mdl_3", "old", 1)]
            )
            conn.execute(
                schema.jobs.insert(),
                [
                    job("job_1", "mdl_1", 30, 0.9),
                    job("job_2", "mdl_2", 5, 0.3),
                    job("job_3", "mdl_1", 60, 2.0),
                    job("job_4", "mdl_3", 1, None),
                ],
            )
        text = metrics.exposition(metrics.catalog_registry(catalog)).decode()
    finally:
        catalog.dispose()
    samples = {
        (s.labels["model"], s.labels["feature"]): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "kubepredict_feature_drift_psi"
        for s in f.samples
    }
    assert samples == {("iris", "a"): 0.3, ("iris", "b"): 0.01}  # version 2's job is the latest; "old" has none


def test_threshold_and_explain_limit_settings(tmp_path):
    from kubepredict.config import ConfigError, Settings

    s = Settings.from_env(
        {"KUBEPREDICT_DRIFT_PSI_THRESHOLD": "0.1", "KUBEPREDICT_EXPLAIN_MAX_ROWS": "7"}, data_dir=tmp_path
    )
    assert (s.drift_psi_threshold, s.explain_max_rows) == (0.1, 7)
    assert (Settings(data_dir=tmp_path).drift_psi_threshold, Settings(data_dir=tmp_path).explain_max_rows) == (
        0.25,
        100,
    )
    for bad in ({"KUBEPREDICT_DRIFT_PSI_THRESHOLD": "0"}, {"KUBEPREDICT_EXPLAIN_MAX_ROWS": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad, data_dir=tmp_path)


def test_bin_counts_match_a_searchsorted_per_value_with_missing_infinite_and_repeated_edges():
    from kubepredict.ml.profile import bin_counts

    rng = np.random.default_rng(1)
    for _ in range(200):
        values = rng.normal(size=rng.integers(0, 500)).round(rng.integers(0, 3))
        values[rng.random(len(values)) < 0.1] = np.nan
        values[rng.random(len(values)) < 0.03] = np.inf
        values[rng.random(len(values)) < 0.03] = -np.inf
        edges = sorted(rng.choice(np.round(rng.normal(size=12), 1), size=rng.integers(0, 10)))
        finite = np.isfinite(values)
        idx = np.searchsorted(np.asarray(edges, dtype=float), values[finite], side="left")
        expected = np.bincount(idx, minlength=len(edges) + 1).tolist(), int((~finite).sum())
        assert bin_counts(values, edges) == expected
