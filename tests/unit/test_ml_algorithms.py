"""Catalogue: names, dotted class paths, params checked cheaply at request time, task inference."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from kubepredict.errors import InvalidInput
from kubepredict.ml import ALGORITHMS, TASKS, build_estimator, infer_task, list_algorithms, resolve, validate_request


def test_catalogue_covers_every_task_and_is_json_safe():
    names = {(s.name, s.task) for s in ALGORITHMS}
    for name in (
        "logistic_regression",
        "random_forest",
        "hist_gradient_boosting",
        "svm",
        "knn",
        "decision_tree",
        "naive_bayes",
        "mlp",
    ):
        assert (name, "classification") in names
    for name in ("linear_regression", "ridge", "lasso", "random_forest", "hist_gradient_boosting", "svr", "knn"):
        assert (name, "regression") in names
    for name in ("kmeans", "gaussian_mixture", "minibatch_kmeans"):
        assert (name, "clustering") in names
    listed = list_algorithms()
    json.dumps(listed)
    assert {e["task"] for e in listed if e["name"] == "auto"} == set(TASKS)
    assert all(e["task"] == "regression" for e in list_algorithms("regression"))
    assert {"name", "task", "estimator", "default_params"} <= set(listed[1])


def test_svm_has_probabilities_and_every_catalogue_entry_builds():
    for spec in ALGORITHMS:
        est = build_estimator(spec, None, random_state=0)
        assert type(est).__name__ == spec.estimator.rsplit(".", 1)[1]
    svc = build_estimator(resolve("svm", "classification"), None)
    assert svc.probability is True


def test_same_name_resolves_per_task():
    assert resolve("random_forest", "classification").estimator.endswith("RandomForestClassifier")
    assert resolve("random_forest", "regression").estimator.endswith("RandomForestRegressor")


def test_params_overlay_defaults_and_random_state_is_set_unless_given():
    spec = resolve("random_forest", "classification")
    est = build_estimator(spec, {"n_estimators": 7}, random_state=3)
    assert isinstance(est, RandomForestClassifier) and est.n_estimators == 7 and est.random_state == 3
    assert build_estimator(spec, {"random_state": 11}, random_state=3).random_state == 11
    assert build_estimator(resolve("naive_bayes", "classification"), None, random_state=3) is not None


def test_dotted_sklearn_class_is_accepted():
    spec = resolve("sklearn.ensemble.ExtraTreesClassifier", "classification")
    assert spec.name == spec.estimator == "sklearn.ensemble.ExtraTreesClassifier"
    assert isinstance(build_estimator(spec, {"n_estimators": 5}), ExtraTreesClassifier)


@pytest.mark.parametrize(
    "algorithm",
    [
        "os.system",
        "sklearn.base.__builtins__",
        "sklearn.x.__class__",
        "sklearn.base.BaseEstimator",
        "sklearn.preprocessing.StandardScaler",
        "sklearn.utils.estimator_html_repr",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.nope.Thing",
        "builtins.eval",
        "sklearn.linear_model.Ridge",  # a regressor is not a classifier
        "no_such_algorithm",
    ],
)
def test_unknown_or_unsafe_algorithms_are_rejected(algorithm):
    with pytest.raises(InvalidInput) as err:
        resolve(algorithm, "classification")
    assert err.value.code == "unknown_algorithm"
    assert "random_forest" in err.value.details["known"]


def test_unservable_clusterers_are_rejected_at_request_time():
    for algorithm in ("birch", "sklearn.cluster.Birch", "sklearn.cluster.DBSCAN"):
        with pytest.raises(InvalidInput) as err:
            validate_request(algorithm, "clustering", None)
        assert err.value.code == "unsupported_algorithm"


@pytest.mark.parametrize(
    "params,unknown",
    [
        ({"n_estimators": -1}, None),
        ({"n_estimators": "many"}, None),
        ({"criterion": "nope"}, None),
        ({"no_such_param": 1}, ["no_such_param"]),
        ({"max_depth": float("nan")}, None),
        ({"n_estimators": object()}, None),
    ],
)
def test_invalid_params_rejected_cheaply(params, unknown):
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as err:
        validate_request("random_forest", "classification", params)
    assert time.perf_counter() - started < 1.0  # validated, not fitted
    assert err.value.code == "invalid_params"
    if unknown:
        assert err.value.details["unknown"] == unknown
        assert "n_estimators" in err.value.details["valid"]


def test_validate_request_accepts_good_requests():
    validate_request("auto", "classification", None)
    validate_request("auto", None, {"anything": 1})
    validate_request("kmeans", "clustering", {"n_clusters": 4})
    validate_request("random_forest", None, {"n_estimators": 10})  # task inferred later
    with pytest.raises(InvalidInput) as err:
        validate_request("random_forest", "ranking", None)
    assert err.value.code == "invalid_task"


def test_infer_task():
    assert infer_task(pd.Series(["a", "b"] * 20)) == "classification"
    assert infer_task(pd.Series([0, 1, 2] * 20)) == "classification"
    assert infer_task(pd.Series([True, False] * 20)) == "classification"
    assert infer_task(pd.Series(np.arange(100))) == "regression"
    assert infer_task(pd.Series([0.5, 1.5, 2.0, 3.25] * 5)) == "regression"
    # 25 distinct integers among 1000 rows is only 2.5%: codes, not a quantity
    assert infer_task(pd.Series(np.arange(1000) % 25)) == "classification"
