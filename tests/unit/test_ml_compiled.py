"""The compiled online scorer gives exactly the pipeline's answers, and refuses bad values with a 400."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from kubepredict.errors import InvalidInput
from kubepredict.ml import score, train
from kubepredict.ml.compiled import compile_pipeline, probe_frame, verify

FEATURES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(1)
    n = 600
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n) * 10,
            "c": rng.choice(["x", "y", "z", None], n),
            # more distinct values than MAX_CATEGORIES: exercises the "infrequent" column
            "d": rng.choice([f"k{i}" for i in range(150)], n),
        }
    )
    df.loc[::7, "a"] = np.nan
    df["binary"] = np.where(df.a.fillna(0) + (df.c == "x") + rng.normal(size=n) > 0.5, "yes", "no")
    df["multi"] = rng.choice(["p", "q", "s"], n)
    df["value"] = df.a.fillna(0) * 3 + df.b + rng.normal(size=n)
    return df


CASES = [
    ("binary", "logistic_regression", "linear-classifier"),
    ("multi", "logistic_regression", "linear-classifier"),
    ("binary", "random_forest", "tree-classifier"),
    ("multi", "random_forest", "tree-classifier"),
    ("binary", "decision_tree", "tree-classifier"),
    ("binary", "sklearn.ensemble.ExtraTreesClassifier", "tree-classifier"),
    ("value", "linear_regression", "estimator"),
    ("value", "ridge", "estimator"),
    ("value", "lasso", "estimator"),
    ("value", "random_forest", "tree-regressor"),
    ("multi", "knn", "estimator"),
    ("multi", "hist_gradient_boosting", "estimator"),
]


@pytest.mark.parametrize("target,algorithm,kind", CASES)
def test_compiled_matches_pipeline_exactly(frame, target, algorithm, kind):
    result = train(
        frame[FEATURES + [target]],
        target=target,
        features=FEATURES,
        task=None,
        algorithm=algorithm,
        params=None,
        random_state=0,
    )
    assert result.metrics["serving"]["fast_path"] == kind
    assert result.metrics["serving"]["verified_rows"] > 0
    compiled = compile_pipeline(result.pipeline, features=result.features, kinds=result.kinds, task=result.task)
    assert compiled.kind == kind
    # Every row, including missing numbers and categories, unseen categories and the probe rows.
    rows = pd.concat(
        [
            frame[FEATURES],
            probe_frame(compiled),
            pd.DataFrame({"a": [1.0], "b": [None], "c": ["never seen"], "d": [None]}),
        ],
        ignore_index=True,
    )
    check = verify(compiled, result.pipeline, rows, task=result.task)
    assert check["equal"], check
    assert check["max_abs_diff"] <= 1e-9
    expected = score(result.pipeline, rows, features=result.features, kinds=result.kinds, task=result.task)
    got = compiled.score({c: rows[c].tolist() for c in FEATURES}, len(rows))
    assert got.predictions.tolist() == expected.predictions.tolist() or result.task == "regression"
    assert got.classes == expected.classes


def test_verify_notices_a_disagreement(frame):
    result = train(
        frame[FEATURES + ["binary"]],
        target="binary",
        features=FEATURES,
        task=None,
        algorithm="logistic_regression",
        params=None,
    )
    compiled = compile_pipeline(result.pipeline, features=result.features, kinds=result.kinds, task=result.task)
    compiled._coef = -compiled._coef  # a wrong compilation must never pass the check
    assert not verify(compiled, result.pipeline, frame[FEATURES], task=result.task)["equal"]


def test_other_pipeline_shapes_are_not_compiled(frame):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scale", StandardScaler()), ("estimator", LogisticRegression())])
    pipe.fit(frame[["a", "b"]].fillna(0), frame["binary"])
    assert (
        compile_pipeline(pipe, features=["a", "b"], kinds={"a": "numeric", "b": "numeric"}, task="classification")
        is None
    )


@pytest.mark.parametrize(
    "value,message",
    [
        ("abc", "should be numeric"),
        (float("inf"), "infinite"),
        (10**400, "should be numeric"),
        ("1e999", "infinite"),
        ("1_000", "should be numeric"),
    ],
)
def test_bad_numbers_are_a_400(frame, value, message):
    result = train(
        frame[FEATURES + ["binary"]],
        target="binary",
        features=FEATURES,
        task=None,
        algorithm="logistic_regression",
        params=None,
    )
    compiled = compile_pipeline(result.pipeline, features=result.features, kinds=result.kinds, task=result.task)
    with pytest.raises(InvalidInput) as err:
        compiled.score({"a": [value], "b": [1.0], "c": ["x"], "d": ["k1"]}, 1)
    assert message in str(err.value)
    assert err.value.details["column"] == "a"


def test_strings_blanks_and_nulls_are_numbers_or_missing(frame):
    result = train(
        frame[FEATURES + ["value"]], target="value", features=FEATURES, task=None, algorithm="ridge", params=None
    )
    compiled = compile_pipeline(result.pipeline, features=result.features, kinds=result.kinds, task=result.task)
    a = compiled.score({"a": ["1.5", " ", None], "b": [2, 2.0, True], "c": [1, None, "x"], "d": ["k1"] * 3}, 3)
    rows = pd.DataFrame({"a": ["1.5", " ", None], "b": [2, 2.0, True], "c": [1, None, "x"], "d": ["k1"] * 3})
    b = score(result.pipeline, rows, features=result.features, kinds=result.kinds, task=result.task)
    np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-12)


def test_missing_feature_is_named(frame):
    result = train(
        frame[FEATURES + ["binary"]],
        target="binary",
        features=FEATURES,
        task=None,
        algorithm="logistic_regression",
        params=None,
    )
    compiled = compile_pipeline(result.pipeline, features=result.features, kinds=result.kinds, task=result.task)
    with pytest.raises(InvalidInput) as err:
        compiled.score({"a": [1.0], "b": [1.0]}, 1)
    assert err.value.code == "missing_columns" and err.value.details["missing"] == ["c", "d"]
