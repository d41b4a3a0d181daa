"""Scoring a loaded pipeline over a frame, and JSON-safe outputs (request bodies are decoded in ``codecs``)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline

from kubepredict.errors import InvalidInput, Unprocessable
from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import coerce_frame

logger = logging.getLogger(__name__)

PROBABILITY_DECIMALS = 6


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
        raise InvalidInput(
            f"missing columns: {', '.join(missing)}", code="missing_columns", details={"missing": missing}
        )


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
    return score_transformed(pipeline, estimator, Xt, task=task)


def score_transformed(pipeline, estimator, Xt, *, task: str) -> ScoreResult:
    """Predict with ``pipeline``'s final ``estimator`` on ``Xt``, rows its preprocessing already gave."""
    with sklearn.config_context(skip_parameter_validation=True):
        probabilities, classes = None, None
        if task == "classification" and _predict_is_argmax_of_proba(estimator):
            # A forest's predict() is that very argmax over predict_proba(): one pass over the trees, not two.
            probabilities = np.asarray(estimator.predict_proba(Xt), dtype=float)
            predictions = estimator.classes_.take(np.argmax(probabilities, axis=1), axis=0)
        else:
            predictions = np.asarray(estimator.predict(Xt))
            if task == "classification" and hasattr(estimator, "predict_proba"):
                probabilities = np.asarray(estimator.predict_proba(Xt), dtype=float)
        if task == "classification":
            classes = json_safe(getattr(pipeline, "classes_", None))
    return ScoreResult(predictions=predictions, probabilities=probabilities, classes=classes)


def _predict_is_argmax_of_proba(estimator) -> bool:
    """Estimators whose scikit-learn ``predict`` is ``classes_.take(argmax(predict_proba(X)))``, word for word
    (random and extra-trees forests with one output)."""
    from sklearn.ensemble._forest import ForestClassifier

    return isinstance(estimator, ForestClassifier) and getattr(estimator, "n_outputs_", 1) == 1


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
