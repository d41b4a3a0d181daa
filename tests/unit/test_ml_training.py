"""Training: metrics per task, categorical/missing data, auto, progress, refusals."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from kubepredict.errors import InvalidInput, Unprocessable
from kubepredict.ml import score, train


@pytest.fixture(scope="module")
def iris():
    frame = load_iris(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    return frame


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(as_frame=True).frame


def _assert_plain_json(value):
    """Only dict/list/str/int/float/bool/None, no numpy scalars (np.float64 subclasses float), no NaN."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str
            _assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain_json(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))
        assert not (type(value) is float and value != value), "NaN leaked"


def _mixed(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    label = np.where(x + (colour == "red") * 1.5 > 0.5, "yes", "no").astype(object)
    frame = pd.DataFrame({"x": x, "colour": colour, "noise": rng.normal(size=n), "label": label, "empty": np.nan})
    frame.loc[::7, "x"] = np.nan
    frame.loc[::5, "colour"] = None
    frame.loc[3, "label"] = None  # dropped
    return frame


def test_random_forest_on_iris(iris):
    stages = []
    result = train(
        iris,
        target="target",
        features=None,
        task=None,
        algorithm="random_forest",
        params={"n_estimators": 50},
        progress=lambda s, p: stages.append((s, p)),
    )
    m = result.metrics
    assert result.task == "classification" and result.algorithm == "random_forest"
    assert result.estimator == "sklearn.ensemble.RandomForestClassifier"
    assert m["accuracy"] >= 0.9
    assert 0.5 < m["roc_auc"] <= 1.0
    assert result.classes == ["setosa", "versicolor", "virginica"] == m["labels"]
    assert np.array(m["confusion_matrix"]).sum() == m["test_rows"] == 30
    assert np.array(m["confusion_matrix"]).sum(axis=1).tolist() == [10, 10, 10]  # stratified
    assert m["train_rows"] == 120 and m["fit_seconds"] >= 0
    assert set(m["feature_importance"]) == set(result.features)
    assert max(m["feature_importance"], key=m["feature_importance"].get).startswith("petal")
    assert result.params["n_estimators"] == 50 and result.params["random_state"] == 0
    json.dumps({"metrics": m, "params": result.params, "classes": result.classes})
    _assert_plain_json(
        {
            "metrics": m,
            "params": result.params,
            "classes": result.classes,
            "kinds": result.kinds,
            "features": result.features,
        }
    )
    names = [s for s, _ in stages]
    assert names[0] == "preparing" and names[-1] == "done" and "evaluating" in names
    assert [p for _, p in stages] == sorted(p for _, p in stages) and stages[-1][1] == 1.0


def test_regression_on_diabetes(diabetes):
    result = train(diabetes, target="target", features=None, task=None, algorithm="ridge", params=None)
    m = result.metrics
    assert result.task == "regression" and result.classes is None
    assert 0.2 < m["r2"] < 0.8 and m["mae"] > 0 and m["rmse"] >= m["mae"]
    _assert_plain_json(m)
    assert set(m["feature_importance"]) == set(diabetes.columns) - {"target"}


def test_clustering_uses_all_rows(iris):
    frame = iris.drop(columns="target")
    result = train(frame, target=None, features=None, task="clustering", algorithm="kmeans", params={"n_clusters": 3})
    m = result.metrics
    assert sum(m["cluster_sizes"].values()) == len(frame) == m["train_rows"]
    assert m["test_rows"] == 0 and len(m["cluster_sizes"]) == 3
    assert all(isinstance(k, str) for k in m["cluster_sizes"])
    assert 0.3 < m["silhouette"] <= 1
    _assert_plain_json(m)


def test_categorical_missing_values_and_string_labels_train_and_score():
    frame = _mixed()
    result = train(
        frame, target="label", features=None, task=None, algorithm="hist_gradient_boosting", params={"max_iter": 30}
    )
    assert result.kinds == {"x": "numeric", "colour": "categorical", "noise": "numeric", "empty": "numeric"}
    assert result.classes == ["no", "yes"]
    assert result.metrics["train_rows"] + result.metrics["test_rows"] == len(frame) - 1
    assert result.metrics["accuracy"] > 0.7
    # HistGradientBoosting has no feature_importances_: permutation importance on original columns
    assert set(result.metrics["feature_importance"]) == {"x", "colour", "noise", "empty"}
    out = score(
        result.pipeline,
        frame.drop(columns="label").head(10),
        features=result.features,
        kinds=result.kinds,
        task=result.task,
    )
    assert set(out.predictions) <= {"no", "yes"} and out.probabilities.shape == (10, 2)


def test_one_hot_importance_is_summed_back_to_the_column():
    result = train(
        _mixed(),
        target="label",
        features=["x", "colour"],
        task="classification",
        algorithm="logistic_regression",
        params=None,
    )
    assert set(result.metrics["feature_importance"]) == {"x", "colour"}
    assert result.metrics["feature_importance"]["colour"] > 0


def test_auto_picks_a_candidate(iris):
    stages = []
    # auto hands each candidate only the params it understands
    result = train(
        iris,
        target="target",
        features=None,
        task=None,
        algorithm="auto",
        params={"n_estimators": 30, "max_iter": 30},
        progress=lambda s, p: stages.append((s, p)),
    )
    auto = result.metrics["auto"]
    assert auto["scoring"] == "accuracy" and auto["chosen"] == result.algorithm
    assert set(auto["candidates"]) == {"logistic_regression", "random_forest", "hist_gradient_boosting"}
    assert auto["candidates"][result.algorithm] == max(auto["candidates"].values())
    assert len([s for s, _ in stages if s == "fitting"]) >= 3
    _assert_plain_json(result.metrics)


def test_auto_clustering_scores_by_silhouette(iris):
    result = train(
        iris.drop(columns="target"),
        target=None,
        features=None,
        task="clustering",
        algorithm="auto",
        params={"n_clusters": 2, "n_components": 2},
    )
    assert result.metrics["auto"]["scoring"] == "silhouette"
    assert len(result.metrics["cluster_sizes"]) == 2  # each candidate took the params it understands
    assert result.algorithm in result.metrics["auto"]["candidates"]


def test_one_class_target_is_unprocessable():
    frame = pd.DataFrame({"x": range(20), "y": ["same"] * 20})
    with pytest.raises(Unprocessable) as err:
        train(frame, target="y", features=None, task="classification", algorithm="random_forest", params=None)
    assert err.value.code == "one_class_target"


def test_too_few_rows_after_dropping_missing_targets():
    frame = pd.DataFrame({"x": range(8), "y": ["a", "b", None, None, None, None, "a", "b"]})
    with pytest.raises(Unprocessable) as err:
        train(frame, target="y", features=None, task=None, algorithm="knn", params=None)
    assert err.value.code == "too_few_rows"


def test_unknown_columns_and_missing_target(iris):
    with pytest.raises(InvalidInput) as err:
        train(
            iris,
            target="nope",
            features=["sepal length (cm)", "ghost"],
            task=None,
            algorithm="random_forest",
            params=None,
        )
    assert err.value.code == "unknown_columns" and err.value.details["missing"] == ["ghost", "nope"]
    with pytest.raises(InvalidInput):
        train(iris, target=None, features=None, task="classification", algorithm="random_forest", params=None)


def test_dotted_algorithm_trains(iris):
    result = train(
        iris,
        target="target",
        features=None,
        task="classification",
        algorithm="sklearn.tree.ExtraTreeClassifier",
        params=None,
    )
    assert result.algorithm == "sklearn.tree.ExtraTreeClassifier" and result.metrics["accuracy"] > 0.8


def test_auto_on_tiny_data_still_trains():
    frame = pd.DataFrame({"x": range(7), "y": list("abcabca")})
    result = train(frame, target="y", features=None, task=None, algorithm="auto", params=None)
    assert result.metrics["auto"]["chosen"] == result.algorithm


@pytest.mark.parametrize("algorithm", ["random_forest", "sklearn.ensemble.ExtraTreesClassifier"])
def test_forest_labels_from_one_pass_equal_scikit_learns_predict(iris, algorithm):
    """Forests are scored with one pass over the trees (labels = argmax of the probabilities): the very
    labels scikit-learn's own predict() gives, string classes included."""
    features = [c for c in iris.columns if c != "target"]
    rng = np.random.default_rng(4)
    noisy = iris.assign(**{f: iris[f] + rng.normal(0, 0.4, len(iris)) for f in features})  # near ties too
    result = train(
        noisy,
        target="target",
        features=features,
        task="classification",
        algorithm=algorithm,
        params={"n_estimators": 7},
    )
    scored = score(result.pipeline, noisy, features=features, kinds=result.kinds, task="classification")
    assert list(scored.predictions) == list(result.pipeline.predict(noisy[features]))
    np.testing.assert_array_equal(scored.probabilities, result.pipeline.predict_proba(noisy[features]))


@pytest.mark.parametrize("rows", [1, 2, 7, 600, 601, 5000])
def test_median_imputer_learns_scikit_learns_medians(rows):
    """MedianImputer (partial sort) gives SimpleImputer(strategy="median")'s statistics exactly: odd and even
    counts, missing values, an all-missing column (0, as keep_empty_features says)."""
    from sklearn.impute import SimpleImputer

    from kubepredict.ml.preprocess import MedianImputer

    rng = np.random.default_rng(rows)
    X = rng.normal(size=(rows, 5)).round(2)
    X[rng.random((rows, 5)) < 0.2] = np.nan
    X[:, 3] = np.nan
    expected = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
    got = MedianImputer(keep_empty_features=True).fit(X)
    np.testing.assert_array_equal(got.statistics_, expected.statistics_)
    np.testing.assert_array_equal(got.transform(X), expected.transform(X))
    assert type(got) is SimpleImputer  # stored models hold scikit-learn classes only
    assert got.get_params() == expected.get_params()


def test_median_imputer_takes_the_partial_sort(monkeypatch):
    """Its fit goes through its own ``_dense_fit`` (numpy.nanmedian), not SimpleImputer's masked full sort
    (the method had slipped out of the class into a function body, where nothing called it)."""
    from kubepredict.ml.preprocess import MedianImputer

    calls = []
    nanmedian = np.nanmedian
    monkeypatch.setattr(np, "nanmedian", lambda *a, **kw: calls.append(1) or nanmedian(*a, **kw))
    X = np.array([[1.0, np.nan], [3.0, 4.0], [2.0, 6.0]])
    got = MedianImputer(keep_empty_features=True).fit(X)
    np.testing.assert_array_equal(got.statistics_, [2.0, 5.0])
    assert calls, "MedianImputer.fit did not use its partial sort"


@pytest.mark.parametrize(
    "labels, test_size, seed",
    [
        (["b", "a", "c"], 0.2, 0),
        ([0, 1], 0.25, 7),
        ([True, False], 0.3, None),
        ([3, 1, 2, 9], 0.1, 42),
    ],
)
def test_stratified_split_is_the_one_scikit_learn_draws(labels, test_size, seed):
    """Our array-only stratified split picks the very rows train_test_split(stratify=y) picks."""
    from sklearn.model_selection import train_test_split

    from kubepredict.ml.training import stratified_split_indices

    rng = np.random.default_rng(1)
    y = np.array(labels, dtype=object if isinstance(labels[0], str) else None)[
        rng.choice(len(labels), size=997, p=np.linspace(1, 2, len(labels)) / np.linspace(1, 2, len(labels)).sum())
    ]
    rows = np.arange(len(y))
    expected_train, expected_test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=y)
    if seed is None:  # a fresh generator each time: only the shape of the split can be compared
        train, test = stratified_split_indices(y, test_size, seed)
        assert len(train) == len(expected_train) and len(test) == len(expected_test)
        assert set(train).isdisjoint(test)
        return
    train, test = stratified_split_indices(y, test_size, seed)
    np.testing.assert_array_equal(train, expected_train)
    np.testing.assert_array_equal(test, expected_test)
