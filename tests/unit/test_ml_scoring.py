"""Scoring: missing columns, probabilities, JSON-safe values (request formats: test_codecs.py)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from kubepredict.errors import InvalidInput
from kubepredict.ml import build_preprocessor, check_columns, coerce_frame, column_kinds, json_values, score, train


@pytest.fixture(scope="module")
def iris_model():
    frame = load_iris(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    return frame, train(frame, target="target", features=None, task=None, algorithm="logistic_regression", params=None)


def test_missing_columns_are_named(iris_model):
    frame, result = iris_model
    with pytest.raises(InvalidInput) as err:
        score(
            result.pipeline,
            frame.drop(columns=["sepal width (cm)", "petal width (cm)"]),
            features=result.features,
            kinds=result.kinds,
            task=result.task,
        )
    assert err.value.code == "missing_columns"
    assert err.value.details["missing"] == ["sepal width (cm)", "petal width (cm)"]
    assert str(err.value) == "missing columns: sepal width (cm), petal width (cm)"
    check_columns(["a", "b", "extra"], ["b", "a"])


def test_probabilities_and_extra_columns(iris_model):
    frame, result = iris_model
    batch = frame.assign(extra="ignored")
    out = score(result.pipeline, batch, features=result.features, kinds=result.kinds, task=result.task)
    assert out.classes == ["setosa", "versicolor", "virginica"]
    assert out.predictions.shape == (150,) and out.probabilities.shape == (150, 3)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (out.predictions == frame["target"].to_numpy()).mean() > 0.9
    rows = json_values(out.probabilities)
    assert all(abs(sum(r) - 1) < 1e-5 for r in rows)
    json.dumps({"p": json_values(out.predictions), "q": rows})


def _types(value):
    if isinstance(value, list):
        return set().union(*map(_types, value)) if value else set()
    return {type(value)}


def test_json_values_has_only_python_types():
    assert json_values(np.array([1.5, np.nan, np.inf])) == [1.5, None, None]
    assert _types(json_values(np.array([1, 2], dtype=np.int64))) == {int}
    assert _types(json_values(np.array(["a", "b"], dtype=object))) == {str}
    assert json_values(np.array(["a", None, np.nan], dtype=object)) == ["a", None, None]
    assert _types(json_values(np.array([True, False]))) == {bool}
    assert json_values(np.array([[0.1234567891, 0.8765432109]])) == [[0.123457, 0.876543]]
    assert _types(json_values(np.array([np.str_("x")]))) == {str}


def test_coerce_frame_names_bad_numeric_column():
    kinds = {"n": "numeric", "c": "categorical"}
    ok = coerce_frame(pd.DataFrame({"n": ["1.5", "", None], "c": [1, None, "z"]}), kinds)
    assert ok["n"].tolist()[0] == 1.5 and ok["n"].isna().tolist() == [False, True, True]
    assert ok["c"].tolist()[0] == "1" and pd.isna(ok["c"].iloc[1])
    with pytest.raises(InvalidInput) as err:
        coerce_frame(pd.DataFrame({"n": ["1", "abc"], "c": ["a", "b"]}), kinds)
    assert err.value.code == "invalid_values" and err.value.details["column"] == "n"


def test_preprocessor_survives_all_nan_and_unknown_categories():
    frame = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0, np.nan],
            "allnan": np.nan,
            "s": pd.Series(["x", "y", None, "x"], dtype="object"),
            "snan": [None] * 4,
            "flag": [True, False, True, True],
        }
    )
    kinds = column_kinds(frame, list(frame.columns))
    assert kinds == {
        "a": "numeric",
        "allnan": "numeric",
        "s": "categorical",
        "snan": "categorical",
        "flag": "categorical",
    }
    pre = build_preprocessor(kinds).fit(coerce_frame(frame, kinds))
    new = coerce_frame(
        pd.DataFrame({"a": [np.nan], "allnan": [5.0], "s": ["never seen"], "snan": ["q"], "flag": [False]}), kinds
    )
    out = pre.transform(new)
    assert out.shape[0] == 1 and np.isfinite(out).all()
