"""Scoring a loaded pipeline: online instances and batch frames, JSON-safe outputs."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.pipeline import Pipeline
import pandas as pd

from kubepredict.codecs.table import Table
from kubepredict.errors import InvalidInput, Unprocessable
from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import coerce_frame

logger = logging.getLogger(__name__)

PROBABILITY_DECIMALS = 6
INSTANCE_KEYS = ("instances", "dataframe_split", "dataframe_records")


@dataclass
class ScoreResult:
    """Predictions for every input row, with class probabilities for classifiers that have them."""

    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: list | None


def check_columns(columns, features: list[str]) -> None:
    """Raise InvalidInput(code="missing_columns") naming every feature absent from ``columns``."""
    present = set(columns)
    missing = [f for f in features if f not in present]
    if missing:
        raise InvalidInput(f"missing columns: {', '.join(missing)}", code="missing_columns",
                           details={"missing": missing})


def score(pipeline, frame: pd.DataFrame, *, features: list[str], kinds: dict, task: str) -> ScoreResult:
    """Predict every row of ``frame`` (extra columns ignored) with a fitted pipeline."""
    check_columns(frame.columns, features)
    X = coerce_frame(frame, {f: kinds[f] for f in features})
    if len(X) == 0:
        raise InvalidInput("no rows to score", code="invalid_instances")
    if not hasattr(pipeline, "predict"):
        raise Unprocessable("this model cannot score new rows (no predict)", code="no_predict")
    # Preprocess once, then ask the estimator for labels and probabilities (predict() itself, not an
    # argmax, so models whose predict differs from their probabilities, e.g. SVC, stay exact).
    # Parameters were validated when the model was trained; re-validating them per call costs more
    # than scoring a row.
    with sklearn.config_context(skip_parameter_validation=True):
        if isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
            estimator, Xt = pipeline.steps[-1][1], pipeline[:-1].transform(X)
        else:
            estimator, Xt = pipeline, X
        predictions = np.asarray(estimator.predict(Xt))
        probabilities, classes = None, None
        if task == "classification":
            classes = json_safe(getattr(pipeline, "classes_", None))
            if hasattr(estimator, "predict_proba"):
                probabilities = np.asarray(estimator.predict_proba(Xt), dtype=float)
    return ScoreResult(predictions=predictions, probabilities=probabilities, classes=classes)


def json_values(array, decimals: int | None = None) -> list:
    """Convert an array to JSON lists (python scalars, NaN -> None).

    2-D float arrays (probabilities) are rounded to 6 decimals; pass ``decimals`` to round others.
    """
    arr = np.asarray(array)
    if decimals is None and arr.ndim == 2 and arr.dtype.kind == "f":
        decimals = PROBABILITY_DECIMALS
    if arr.dtype.kind == "f":
        if decimals is not None:
            arr = arr.round(decimals)
        if np.isfinite(arr).all():  # the common case: no per-value Python walk
            return arr.tolist()
        return _clean_floats(arr.tolist())
    if arr.dtype.kind in "biu":
        return arr.tolist()
    return json_safe(arr.tolist())


def _clean_floats(values):
    if isinstance(values, list):
        return [_clean_floats(v) for v in values]
    return values if math.isfinite(values) else None


def frame_from_instances(body: dict) -> pd.DataFrame:
    """Build a DataFrame from an online predict body: instances, dataframe_split or dataframe_records."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    given = [k for k in INSTANCE_KEYS if k in body]
    if len(given) != 1:
        raise _bad(f"give exactly one of {', '.join(INSTANCE_KEYS)}")
    key = given[0]
    if key == "dataframe_split":
        return _from_split(body[key])
    rows = body[key]
    if not isinstance(rows, list) or not rows:
        raise _bad(f"{key} must be a non-empty list of objects")
    for i, row in enumerate(rows):
        if isinstance(row, list):
            raise _bad(f"{key}[{i}] is a list without column names; send objects "
                       "({\"column\": value}) or use dataframe_split with columns")
        if not isinstance(row, dict) or not row:
            raise _bad(f"{key}[{i}] must be a non-empty object of column: value")
        _check_scalars(row.values(), f"{key}[{i}]")
    return pd.DataFrame.from_records(rows)


def table_from_instances(body: dict) -> Table:
    """Like ``frame_from_instances``, without pandas: the columns straight from the JSON values."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    given = [k for k in INSTANCE_KEYS if k in body]
    if len(given) != 1:
        raise _bad(f"give exactly one of {', '.join(INSTANCE_KEYS)}")
    key = given[0]
    if key == "dataframe_split":
        columns, data = _check_split(body[key])
        return Table.from_rows(columns, data)
    rows = _check_records(key, body[key])
    return Table.from_records(rows)


def _check_records(key: str, rows) -> list:
    if not isinstance(rows, list) or not rows:
        raise _bad(f"{key} must be a non-empty list of objects")
    for i, row in enumerate(rows):
        if isinstance(row, list):
            raise _bad(f"{key}[{i}] is a list without column names; send objects "
                       "({\"column\": value}) or use dataframe_split with columns")
        if not isinstance(row, dict) or not row:
            raise _bad(f"{key}[{i}] must be a non-empty object of column: value")
        _check_scalars(row.values(), f"{key}[{i}]")
    return rows


def _check_split(split) -> tuple[list, list]:
    if not isinstance(split, dict) or "columns" not in split or "data" not in split:
        raise _bad("dataframe_split needs 'columns' and 'data'")
    columns, data = split["columns"], split["data"]
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise _bad("dataframe_split.columns must be a non-empty list of names")
    if len(set(columns)) != len(columns):
        raise _bad("dataframe_split.columns has duplicate names")
    if not isinstance(data, list) or not data:
        raise _bad("dataframe_split.data must be a non-empty list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise _bad(f"dataframe_split.data[{i}] must be a list of {len(columns)} values (ragged row)")
        _check_scalars(row, f"dataframe_split.data[{i}]")
    return columns, data


def _from_split(split) -> pd.DataFrame:
    if not isinstance(split, dict) or "columns" not in split or "data" not in split:
        raise _bad("dataframe_split needs 'columns' and 'data'")
    columns, data = split["columns"], split["data"]
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise _bad("dataframe_split.columns must be a non-empty list of names")
    if len(set(columns)) != len(columns):
        raise _bad("dataframe_split.columns has duplicate names")
    if not isinstance(data, list) or not data:
        raise _bad("dataframe_split.data must be a non-empty list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise _bad(f"dataframe_split.data[{i}] must be a list of {len(columns)} values (ragged row)")
        _check_scalars(row, f"dataframe_split.data[{i}]")
    return pd.DataFrame(data, columns=columns)


def _check_scalars(values, where: str) -> None:
    for v in values:
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise _bad(f"{where} holds a {type(v).__name__}; values must be strings, numbers, booleans or null")


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_instances")
