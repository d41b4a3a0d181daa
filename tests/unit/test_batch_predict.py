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
