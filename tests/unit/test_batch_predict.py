"""The batch predict loop's encodings: values, class counts and the CSV cells are what they were per row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kubepredict import ml
from kubepredict.runner.batch_predict import BatchSummary, prediction_array, probability_array
from kubepredict.services.csv_download import _python_text


@pytest.mark.parametrize(
    "values, task",
    [
        (np.array([1, 0, 1, 1, 2]), "classification"),
        (np.array(["pos", "neg", None, "pos"], dtype=object), "classification"),
        (np.array([True, False, True]), "classification"),
        (np.array([1.0, 0.0, 1.0]), "classification"),
        (np.array([0.5, np.nan, -np.inf, 1e-7, 3.0, 123456.789]), "regression"),
    ],
)
def test_predictions_keep_the_values_json_values_gave(values, task):
    array, codes, labels = prediction_array(values, task)
    assert array.to_pylist() == ml.json_values(values)
    summary = BatchSummary(task)
    summary.add(values, codes, labels)
    if task == "classification":
        expected: dict = {}
        for v in ml.json_values(values):
            expected[str(v)] = expected.get(str(v), 0) + 1
        assert summary.as_dict()["class_counts"] == expected
    else:
        assert summary.as_dict()["quantiles"]["max"] == 123456.789


def test_probabilities_are_rounded_lists_with_null_where_not_finite():
    probs = np.array([[0.1234567, 0.8765433], [np.nan, 1.0]])
    assert probability_array(probs, 2).to_pylist() == [[0.123457, 0.876543], [None, 1.0]]
    assert probability_array(None, 3).to_pylist() == [None, None, None]


def test_summaries_merge_across_shards():
    a, b = BatchSummary("classification"), BatchSummary("classification")
    for s, values in ((a, np.array(["x", "y", "x"], dtype=object)), (b, np.array(["y", "y"], dtype=object))):
        _, codes, labels = prediction_array(values, "classification")
        s.add(values, codes, labels)
    a.merge(b)
    assert a.as_dict() == {"rows": 5, "class_counts": {"y": 3, "x": 2}}


def test_csv_cells_print_like_python():
    floats = [0.0, 1.0, -2.0, 0.5, 7.9e-05, 1e-07, 123456789.0, 1e16, 1e22, 0.1 + 0.2, None]
    assert _python_text(pa.array(floats, type=pa.float64())).to_pylist() == [
        None if v is None else str(v) for v in floats
    ]
    assert _python_text(pa.array([True, False, None])).to_pylist() == ["True", "False", None]


# ---- our own all-numeric pipelines: rows preprocessed straight from the Arrow columns (batch_matrix) ------
def _numeric_data(rows: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) * (i + 1) + i for i in range(6)})
    frame["n"] = rng.integers(-50, 50, rows)  # an integer column: float64 through both ways
    frame.loc[rng.random(rows) < 0.1, "x1"] = np.nan  # missing values: the fitted median fills them
    frame["y_reg"] = frame["x0"] * 3 - frame["n"] + rng.normal(size=rows)
    frame["y_cls"] = np.where(frame["x2"] + frame["x3"] > 5, "a", "b")
    return frame


class _Catalog:
    def __init__(self):
        self.batches = []

    def insert_prediction_batch(self, job_id, row, predictions, probabilities):
        self.batches.append((row, predictions, probabilities))


@pytest.mark.parametrize(
    ("task", "algorithm"),
    [
        ("regression", "linear_regression"),
        ("regression", "random_forest"),
        ("classification", "logistic_regression"),
        ("classification", "random_forest"),
        ("classification", "knn"),
    ],
)
def test_numeric_batches_score_exactly_as_scikit_learn_does(task, algorithm, monkeypatch):
    from kubepredict.runner.batch_matrix import NumericBatches
    from kubepredict.runner.batch_predict import score_batches

    direct: list[bool] = []
    original = NumericBatches.matrix

    def counting(self, columns, batch):
        out = original(self, columns, batch)
        direct.append(out is not None)
        return out

    monkeypatch.setattr(NumericBatches, "matrix", counting)

    train = _numeric_data(3000, 0)
    features = [c for c in train.columns if c.startswith(("x", "n"))]
    target = "y_reg" if task == "regression" else "y_cls"
    result = ml.train(train, target=target, features=features, task=task, algorithm=algorithm, params={})
    kinds = {f: "numeric" for f in features}
    assert NumericBatches.of(result.pipeline, features=features, kinds=kinds, task=task) is not None
    new = _numeric_data(5000, 1)
    table = pa.Table.from_pandas(new[features], preserve_index=False)
    catalog = _Catalog()
    score_batches(
        catalog,
        "job_x",
        result.pipeline,
        features=features,
        kinds=kinds,
        task=task,
        batches=table.to_batches(max_chunksize=1500),
        first_row=0,
    )
    assert direct == [True] * 4, direct  # every batch went the direct way (the first one checked)
    expected = ml.score(result.pipeline, new, features=features, kinds=kinds, task=task)
    got = np.concatenate([np.asarray(p.to_pylist(), dtype=object) for _, p, _ in catalog.batches])
    assert got.tolist() == [ml.json_values([v])[0] for v in expected.predictions]  # bit for bit
    if expected.probabilities is not None:
        probs = [row for _, _, p in catalog.batches for row in p.to_pylist()]
        assert probs == probability_array(expected.probabilities, len(new)).to_pylist()


def test_a_batch_whose_direct_preprocessing_differs_is_scored_by_scikit_learn(monkeypatch):
    """The first batch is checked against scikit-learn: a difference turns the direct way off for the job."""
    from kubepredict.ml import compiled
    from kubepredict.runner.batch_matrix import NumericBatches

    train = _numeric_data(2000, 2)
    features = [c for c in train.columns if c.startswith(("x", "n"))]
    kinds = {f: "numeric" for f in features}
    result = ml.train(train, target="y_reg", features=features, task="regression", algorithm="ridge", params={})
    original = compiled.CompiledScorer.transform
    monkeypatch.setattr(compiled.CompiledScorer, "transform", lambda self, *a, **k: original(self, *a, **k) + 1e-12)
    numeric = NumericBatches.of(result.pipeline, features=features, kinds=kinds, task="regression")
    batch = pa.RecordBatch.from_pandas(_numeric_data(100, 3)[features], preserve_index=False)
    columns = numeric.columns(batch)
    assert columns is not None and numeric.matrix(columns, batch) is None
    assert numeric.columns(batch) is None  # scikit-learn for the rest of the job


def test_text_columns_and_other_pipelines_are_not_preprocessed_directly():
    import pandas as pd

    from kubepredict.runner.batch_matrix import NumericBatches

    train = _numeric_data(500, 4)
    features = ["x0", "x2"]
    result = ml.train(
        train, target="y_cls", features=features, task="classification", algorithm="logistic_regression", params={}
    )
    numeric = NumericBatches.of(
        result.pipeline, features=features, kinds={f: "numeric" for f in features}, task="classification"
    )
    text = pa.RecordBatch.from_pandas(pd.DataFrame({"x0": ["1.5", "2"], "x2": [1.0, 2.0]}), preserve_index=False)
    assert numeric.columns(text) is None  # numbers sent as text: scikit-learn's coercion and errors
    mixed = train.assign(c=np.where(train["x0"] > 0, "u", "v"))
    with_text = ml.train(
        mixed, target="y_cls", features=["x0", "c"], task="classification", algorithm="logistic_regression", params={}
    )
    kinds = {"x0": "numeric", "c": "categorical"}
    assert NumericBatches.of(with_text.pipeline, features=["x0", "c"], kinds=kinds, task="classification") is None
