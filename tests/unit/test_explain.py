"""Per-row explanations (ml/explain.py): base + contributions equals the model's output — exactly for
linear models (1e-6) and tree ensembles (1e-4), by construction for the permutation approximation —
with one-hot columns summed back into their source column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubepredict import ml
from kubepredict.errors import Unprocessable
from kubepredict.ml import explain, profile


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n) * 3 + 1})
    frame["colour"] = rng.choice(["red", "green", "blue"], n)
    frame.loc[::17, "b"] = np.nan
    score = frame["a"] * 2 - frame["b"].fillna(0) * 0.5 + frame["colour"].map({"red": 1.5, "green": 0, "blue": -1})
    frame["amount"] = score + rng.normal(0, 0.1, n)
    frame["label"] = np.where(score > 0.3, "yes", "no")
    frame["kind"] = pd.cut(score, [-np.inf, -1, 1, np.inf], labels=["low", "mid", "high"]).astype(str)
    return frame


FEATURES = ["a", "b", "colour"]


def _explain(target: str, algorithm: str, params=None, rows: int = 25) -> tuple[dict, ml.TrainResult, pd.DataFrame]:
    frame = _frame()
    result = ml.train(frame, target=target, features=FEATURES, task=None, algorithm=algorithm, params=params)
    bg = profile.background_frame(result.profile, result.kinds)
    new = _frame(rows, seed=9)
    out = explain.explain(
        result.pipeline, new, features=result.features, kinds=result.kinds, task=result.task, background=bg
    )
    return out, result, new


def _totals(out: dict) -> np.ndarray:
    base = np.asarray(out["base"])
    return np.array([base + np.sum([row["contributions"][c] for c in out["columns"]], axis=0) for row in out["rows"]])


def _model_output(result: ml.TrainResult, frame: pd.DataFrame, scale: str) -> np.ndarray:
    X = frame[FEATURES]
    if scale == "probability":
        return result.pipeline.predict_proba(X)
    if scale in ("log-odds", "logit"):
        return result.pipeline.decision_function(X).reshape(len(X), -1)
    return result.pipeline.predict(X).reshape(len(X), -1)


@pytest.mark.parametrize(
    "target,algorithm,scale",
    [
        ("amount", "linear_regression", "value"),
        ("amount", "ridge", "value"),
        ("label", "logistic_regression", "log-odds"),
        ("kind", "logistic_regression", "logit"),
    ],
)
def test_linear_models_add_up_exactly(target, algorithm, scale):
    out, result, new = _explain(target, algorithm)
    assert out["method"] == "linear" and out["scale"] == scale
    assert out["columns"] == FEATURES  # colour's three one-hot columns are one column here
    expected = _model_output(result, new, scale)
    assert np.abs(_totals(out) - expected).max() < 1e-6
    assert np.abs(np.array([r["output"] for r in out["rows"]]) - expected).max() < 1e-6
    if target == "label":
        assert out["outputs"] == ["yes"]


@pytest.mark.parametrize(
    "target,algorithm,scale",
    [
        ("label", "random_forest", "probability"),
        ("kind", "random_forest", "probability"),
        ("amount", "random_forest", "value"),
        ("label", "hist_gradient_boosting", "log-odds"),
        ("kind", "hist_gradient_boosting", "logit"),
        ("amount", "hist_gradient_boosting", "value"),
        ("label", "decision_tree", "probability"),
    ],
)
def test_tree_models_add_up_within_1e_4(target, algorithm, scale):
    params = {"n_estimators": 20} if algorithm == "random_forest" else None
    out, result, new = _explain(target, algorithm, params)
    assert out["method"] == "tree" and out["scale"] == scale
    assert np.abs(_totals(out) - _model_output(result, new, scale)).max() < 1e-4


def test_other_models_get_the_permutation_approximation_which_adds_up():
    out, result, new = _explain("label", "knn", rows=5)
    assert out["method"] == "permutation" and out["scale"] == "probability"
    assert out["outputs"] == ["no", "yes"]
    assert np.abs(_totals(out) - _model_output(result, new, "probability")).max() < 1e-9
    # the column that drives the label matters more than noise would
    a = np.mean([abs(r["contributions"]["a"][1]) for r in out["rows"]])
    assert a > 0.01


def test_linear_column_contribution_is_its_coefficient_times_the_scaled_gap():
    out, result, new = _explain("amount", "linear_regression", rows=3)
    pre, est = result.pipeline[:-1], result.pipeline[-1]
    scaler = pre[-1].named_transformers_["num"].named_steps["scale"]
    bg = profile.background_frame(result.profile, result.kinds)
    mean_a = ((bg["a"] - scaler.mean_[0]) / scaler.scale_[0]).mean()
    expected = est.coef_[0] * ((new["a"].iloc[0] - scaler.mean_[0]) / scaler.scale_[0] - mean_a)
    assert out["rows"][0]["contributions"]["a"][0] == pytest.approx(expected, abs=1e-9)


def test_clustering_is_not_explainable():
    frame = _frame(60)
    result = ml.train(frame, target=None, features=["a", "b"], task="clustering", algorithm="kmeans", params=None)
    with pytest.raises(Unprocessable) as exc:
        explain.explain(
            result.pipeline, frame, features=["a", "b"], kinds=result.kinds, task="clustering", background=None
        )
    assert getattr(exc.value, "code", None) == "not_explainable"


def test_an_explanation_is_not_run_on_the_event_loop():
    from kubepredict.api.predict import predict

    body = b'{"model_id": "m", "instances": [[1, 2, "red"]]}'
    assert predict.is_quick("POST", "/", body)
    assert not predict.is_quick("POST", "/", body[:-1] + b', "explain": true}')


def test_models_without_a_background_sample():
    """Trained before profiles existed: linear models are explained against a zero reference (still exact),
    tree models need no background, other models are a 422 no_profile."""
    frame, new = _frame(), _frame(5, seed=9)
    for algorithm, method in (("linear_regression", "linear"), ("random_forest", "tree")):
        params = {"n_estimators": 10} if algorithm == "random_forest" else None
        result = ml.train(frame, target="amount", features=FEATURES, task=None, algorithm=algorithm, params=params)
        out = explain.explain(
            result.pipeline, new, features=FEATURES, kinds=result.kinds, task=result.task, background=None
        )
        assert out["method"] == method
        assert np.abs(_totals(out)[:, 0] - result.pipeline.predict(new[FEATURES])).max() < 1e-6
    result = ml.train(frame, target="amount", features=FEATURES, task=None, algorithm="knn", params=None)
    with pytest.raises(Unprocessable) as exc:
        explain.explain(result.pipeline, new, features=FEATURES, kinds=result.kinds, task=result.task, background=None)
    assert exc.value.code == "no_profile"
